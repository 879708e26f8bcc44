/**
 * The collective-communication contract every transport implements (in-process, simulated,
 * `worker_threads`, Open MPI in `@mkor/mpi`), and the errors they reject with.
 *
 * MKOR's synchronise step (Algorithm 1, step 2) is `a, g ← AllReduce_mean(a, g)`: per second-order
 * layer only the two rank-1 vectors, `d_in + d_out` numbers (half the bytes in float16), cross the
 * wire, against the `d_in² + d_out²` factor entries KFAC reduces.
 */

/** How contributions are combined: `'sum'` is `Σ_r x_r`, `'mean'` is `(Σ_r x_r) / worldSize`. */
export type ReduceOp = 'sum' | 'mean';

/**
 * What travels between ranks. `'float16'`: each rank's contribution is rounded to the nearest IEEE
 * binary16 value (ties to even; magnitudes from 65520 up become ±Inf) before it leaves the rank,
 * then decoded exactly and summed in float32; the result is float32. The error per element is at
 * most `2⁻¹¹ Σ_r |x_r|` from the rounding plus the float32 summation error.
 */
export type WirePrecision = 'float32' | 'float16';

/** The default `timeoutMs` of the transports in this package: one minute. */
export const DEFAULT_TIMEOUT_MS = 60_000;
/** The default bucket size of `bucketedAllReduce`: 4 MiB, one million float32. */
export const DEFAULT_BUCKET_BYTES = 4 * 1024 * 1024;
/** The default size of each worker-threads rank's staging region (per buffer set): 512 KiB, 131,072 float32. */
export const DEFAULT_CHUNK_BYTES = 512 * 1024;

/** The reduce operations, for validation. */
export const REDUCE_OPS: readonly ReduceOp[] = ['sum', 'mean'];
/** The wire precisions, for validation. */
export const WIRE_PRECISIONS: readonly WirePrecision[] = ['float32', 'float16'];

/** A limit on how long one collective may wait for the other ranks. */
export interface TimeoutOptions {
  /**
   * Milliseconds from the call until the collective rejects with a {@link TransportTimeoutError}
   * naming the ranks that had not joined; `Infinity` waits forever. The default is the
   * transport's (see its constructor or factory).
   */
  readonly timeoutMs?: number;
}

/** Options of {@link Transport.allReduce}. Every rank must pass the same `op` and `precision`. */
export interface CollectiveOptions extends TimeoutOptions {
  /** Default `'sum'`. */
  readonly op?: ReduceOp;
  /** Default `'float32'`. */
  readonly precision?: WirePrecision;
}

/**
 * A group of `worldSize` ranks that run collectives together. Rules every implementation keeps:
 *
 * - **Order.** Every rank starts the same collectives in the same order (the k-th call on one rank
 *   meets the k-th call on every other). Several calls may be in flight: a transport runs them in
 *   call order, so `Promise.all([t.allReduce(a), t.allReduce(b)])` is fine on every rank.
 * - **Inputs.** `buffer` is never modified, and must not be modified by the caller until the
 *   returned promise settles (a transport may read it late).
 * - **Results.** `allReduce` and `broadcast` resolve with a NEW `Float32Array` of `buffer.length`
 *   elements, bit-identical on every rank.
 * - **Failures.** Buffer lengths (or op, precision, root, or the kind of collective) that differ
 *   across ranks reject with {@link TransportMismatchError}; the group stays usable. A collective
 *   still waiting after `timeoutMs` rejects with {@link TransportTimeoutError}. A timeout, or a
 *   rank that closed or died while others wait for it, leaves the group unusable: the other ranks'
 *   calls reject with {@link TransportAbortedError}. Calls after `close()` reject with
 *   {@link TransportClosedError}.
 */
export interface Transport {
  /** This rank, in `[0, worldSize)`. */
  readonly rank: number;
  /** The number of ranks in the group. */
  readonly worldSize: number;
  /**
   * Element-wise reduction of `buffer` across ranks (see {@link ReduceOp}, {@link WirePrecision}).
   * Resolves with a new array; `buffer` is left unchanged.
   */
  allReduce(buffer: Float32Array, options?: CollectiveOptions): Promise<Float32Array>;
  /**
   * Every rank receives the `root` rank's `buffer` (non-root ranks pass a buffer of the same
   * length, whose values are ignored). Resolves with a new array; `buffer` is left unchanged.
   */
  broadcast(buffer: Float32Array, root: number, options?: TimeoutOptions): Promise<Float32Array>;
  /** Resolves once every rank has called `barrier` (as its collective at the same position). */
  barrier(options?: TimeoutOptions): Promise<void>;
  /**
   * Leaves the group: calls not yet complete reject with {@link TransportClosedError}, later calls
   * too; resources (timers, shared memory views, threads) are released. Idempotent.
   */
  close(): Promise<void>;
}

/** The kinds of collective, as named in error messages. */
export type CollectiveKind = 'allReduce' | 'broadcast' | 'barrier';

/** Base class of every error a transport rejects with. */
export class TransportError extends Error {
  override readonly name: string = 'TransportError';
}

/** A collective waited longer than its `timeoutMs`; `missingRanks` had not joined it. */
export class TransportTimeoutError extends TransportError {
  override readonly name = 'TransportTimeoutError';
  constructor(
    /** The collective that timed out, e.g. `'allReduce'`. */
    readonly operation: CollectiveKind,
    /** Its position among this rank's collectives (0 for the first). */
    readonly sequence: number,
    /** The ranks that had not joined it when the time ran out. */
    readonly missingRanks: readonly number[],
    /** The limit that passed. */
    readonly timeoutMs: number,
  ) {
    super(
      `${operation} #${sequence}: timed out after ${timeoutMs} ms waiting for rank(s) ${missingRanks.join(', ')}`,
    );
  }
}

/**
 * Ranks started collectives that do not match: different buffer lengths, op, precision, root, or
 * a different kind of collective at the same position. Raised on every rank of that collective.
 */
export class TransportMismatchError extends TransportError {
  override readonly name = 'TransportMismatchError';
  constructor(
    readonly operation: CollectiveKind,
    readonly sequence: number,
    /** What differed, e.g. `rank 0 sent 10 elements, rank 1 sent 12`. */
    readonly detail: string,
  ) {
    super(`${operation} #${sequence}: ranks disagree: ${detail}`);
  }
}

/** A call on a transport that has been closed (or was closed while the call waited). */
export class TransportClosedError extends TransportError {
  override readonly name = 'TransportClosedError';
  constructor(
    readonly operation: CollectiveKind,
    readonly rank: number,
  ) {
    super(`${operation}: the transport of rank ${rank} is closed`);
  }
}

/**
 * The group can no longer run collectives: a rank timed out, or `ranks` closed, exited or crashed
 * while others needed them. Every later call on every rank rejects with this error as well.
 */
export class TransportAbortedError extends TransportError {
  override readonly name = 'TransportAbortedError';
  constructor(
    readonly operation: CollectiveKind,
    /** The ranks whose failure aborted the group. */
    readonly ranks: readonly number[],
    /** What happened, e.g. `rank 2 exited with code 1`. */
    readonly reason: string,
  ) {
    super(`${operation}: the group was aborted: ${reason}`);
  }
}
