import { isMainThread } from 'node:worker_threads';

import {
  TransportAbortedError,
  TransportClosedError,
  TransportMismatchError,
  TransportTimeoutError,
  checkFloat32Buffer,
  checkRoot,
  checkTimeout,
  resolveCollectiveOptions,
  resolveTimeout,
} from '@mkor/allreduce';
import type { CollectiveKind, CollectiveOptions, TimeoutOptions, Transport } from '@mkor/allreduce';
import { checkOneOf } from '@mkor/core';

import { NATIVE_KIND, loadMpiAddon } from './addon';
import type { MpiAddon } from './addon';

/** The default `timeoutMs` of an {@link MpiTransport}: one minute, as the other transports. */
export const MPI_DEFAULT_TIMEOUT_MS = 60_000;

/**
 * How `precision: 'float16'` travels:
 * - `'convert'` — each value is rounded to the nearest float16 (ties to even) and decoded back to
 *   float32 on the sending rank, then summed by `MPI_Iallreduce(MPI_FLOAT, MPI_SUM)`: the float16
 *   rounding happens once per contribution, as the `Transport` contract states (error at most
 *   `2⁻¹¹ Σ_r |x_r|` plus float32 summation error), but float32 bytes cross the wire.
 * - `'half'` — float16 bit patterns travel (`MPI_UINT16_T`, half the bytes) and a user-defined
 *   `MPI_Op` adds pairs in float32 and rounds each partial sum to float16: up to `worldSize − 1`
 *   more float16 roundings, so the error bound grows to about `worldSize · 2⁻¹¹ Σ_r |x_r|`, and
 *   the per-element work is slower than `MPI_SUM` on floats.
 */
export type Float16Wire = 'convert' | 'half';

/** The float16 wire formats, for validation. */
export const FLOAT16_WIRES: readonly Float16Wire[] = ['convert', 'half'];

/** The thread support MPI granted (`MPI_Query_thread`); the transport needs `'funneled'`. */
export type MpiThreadLevel = 'single' | 'funneled' | 'serialized' | 'multiple';

const THREAD_LEVELS: readonly MpiThreadLevel[] = ['single', 'funneled', 'serialized', 'multiple'];

/** Options of {@link MpiTransport.create}. Every rank must pass the same values. */
export interface MpiTransportOptions {
  /** The timeout of calls that pass none (ms, > 0, or `Infinity`). Default {@link MPI_DEFAULT_TIMEOUT_MS}. */
  readonly timeoutMs?: number;
  /**
   * Before every collective, check that all ranks called the same kind of collective with the
   * same buffer length, op, precision and root: one extra 10-integer `MPI_Iallreduce(MPI_MAX)`
   * (one small-message latency; within the noise of the measurements in docs/packages/mpi.md). A
   * disagreement rejects with `TransportMismatchError` on every rank and the group stays usable.
   * Without the check, MPI's behaviour for mismatched lengths is undefined (truncation errors,
   * hangs or wrong results). Default `true`.
   */
  readonly checkAgreement?: boolean;
  /** How `precision: 'float16'` travels (see {@link Float16Wire}). Default `'convert'`. */
  readonly float16Wire?: Float16Wire;
  /**
   * Listen for SIGTERM while the transport is open: `mpirun` sends it to every rank when one rank
   * exits without `MPI_Finalize`, crashes or exits with a non-zero code, and kills the ranks a
   * second later. The listener prints one line to stderr naming the cause, rejects the collectives
   * in flight with `TransportAbortedError`, and — when no other SIGTERM listener is installed —
   * exits with code 143 after 200 ms. Default `true`.
   */
  readonly handleTermination?: boolean;
  /** The compiled addon to load. Default `build/Release/mkor_mpi.node` inside this package. */
  readonly addonPath?: string;
}

const REDUCE_CODES = { sum: 0, mean: 1 } as const;
const WIRE_CODES = { float32: 0, convert: 1, half: 2 } as const;

/** The exit code of a process ended by SIGTERM. */
const SIGTERM_EXIT_CODE = 128 + 15;

/** A call whose promise has not settled yet. */
interface PendingCall {
  readonly operation: CollectiveKind;
  readonly reject: (error: Error) => void;
}

/** Only {@link MpiTransport.create} may construct. */
const CREATE_TOKEN = Symbol('MpiTransport.create');

/**
 * A {@link Transport} over Open MPI, for programs started with `mpirun -np <N> node <script>`:
 * `rank` and `worldSize` are `MPI_COMM_WORLD`'s. One per process (MPI is initialised once).
 *
 * A dedicated native thread makes every MPI call: it runs `MPI_Init_thread`, starts each call's
 * non-blocking collective (`MPI_Iallreduce`, `MPI_Ibcast`, `MPI_Ibarrier`) in call order — so
 * several calls may be in flight and they meet in the same order on every rank — polls them with
 * `MPI_Test`, and runs `MPI_Finalize` on `close()` (or at process exit). The event loop never
 * blocks on MPI. MKOR's synchronise step (Algorithm 1, step 2), `a, g ← AllReduce_mean(a, g)`, is
 * `allReduce(packed, { op: 'mean' })`.
 *
 * Failures: mismatched calls reject with `TransportMismatchError` on every rank (see
 * {@link MpiTransportOptions.checkAgreement}); a call that waits past `timeoutMs` rejects with
 * `TransportTimeoutError` (MPI cannot say which ranks were missing, so `missingRanks` is empty)
 * and leaves the group unusable (`TransportAbortedError` afterwards), because MPI cannot cancel a
 * started collective. A rank that crashes or exits without `MPI_Finalize` makes `mpirun` end the
 * whole job (see {@link MpiTransportOptions.handleTermination}).
 */
export class MpiTransport implements Transport {
  /** This process's rank in `MPI_COMM_WORLD`, in `[0, worldSize)`. */
  readonly rank: number;
  /** The number of ranks of `MPI_COMM_WORLD` (the `-np` of `mpirun`; 1 without `mpirun`). */
  readonly worldSize: number;
  /** The thread support MPI granted. */
  readonly threadLevel: MpiThreadLevel;
  /** `MPI_Get_library_version`, e.g. `Open MPI v4.1.4, ...`. */
  readonly libraryVersion: string;
  readonly #addon: MpiAddon;
  readonly #defaultTimeoutMs: number;
  readonly #checkAgreement: boolean;
  readonly #float16Wire: Float16Wire;
  readonly #pending = new Set<PendingCall>();
  #sequence = 0;
  #abort: { readonly ranks: readonly number[]; readonly reason: string } | undefined;
  #closing: Promise<void> | undefined;
  /** The uncaught exception or unhandled rejection that is ending the process, if any. */
  #fatal: { readonly error: unknown; readonly origin: string } | undefined;
  readonly #onExit = (code: number): void => this.#finalizeAtExit(code);
  readonly #onFatal = (error: unknown, origin: string): void => {
    this.#fatal ??= { error, origin };
  };
  readonly #onTerminate = (): void => this.#terminated();

  /**
   * Initialises MPI (on the transport's own thread) and resolves with this process's transport.
   * Rejects with `MpiUnavailableError` when the addon or Open MPI is missing (the message says how
   * to install them), and with an `Error` when MPI already ran in this process or when called
   * from a worker thread.
   */
  static async create(options: MpiTransportOptions = {}): Promise<MpiTransport> {
    const where = 'MpiTransport.create';
    const timeoutMs = checkTimeout(where, options.timeoutMs ?? MPI_DEFAULT_TIMEOUT_MS);
    const float16Wire = checkOneOf(where, 'float16Wire', options.float16Wire ?? 'convert', FLOAT16_WIRES);
    const checkAgreement = checkBoolean(where, 'checkAgreement', options.checkAgreement ?? true);
    const handleTermination = checkBoolean(where, 'handleTermination', options.handleTermination ?? true);
    if (!isMainThread) {
      throw new Error(`${where}: MPI must be used from the main thread, not a worker thread`);
    }
    const addon = loadMpiAddon(where, options.addonPath);
    let info;
    try {
      info = await addon.start();
    } catch (error) {
      throw new Error(`${where}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
    const transport = new MpiTransport(CREATE_TOKEN, addon, info, timeoutMs, checkAgreement, float16Wire);
    process.on('exit', transport.#onExit);
    process.on('uncaughtExceptionMonitor', transport.#onFatal);
    if (handleTermination) process.on('SIGTERM', transport.#onTerminate);
    return transport;
  }

  private constructor(
    token: symbol,
    addon: MpiAddon,
    info: { rank: number; size: number; threadLevel: number; libraryVersion: string },
    defaultTimeoutMs: number,
    checkAgreement: boolean,
    float16Wire: Float16Wire,
  ) {
    if (token !== CREATE_TOKEN) throw new TypeError('MpiTransport: use MpiTransport.create()');
    this.#addon = addon;
    this.rank = info.rank;
    this.worldSize = info.size;
    this.threadLevel = THREAD_LEVELS[info.threadLevel] ?? 'single';
    this.libraryVersion = info.libraryVersion.trim();
    this.#defaultTimeoutMs = defaultTimeoutMs;
    this.#checkAgreement = checkAgreement;
    this.#float16Wire = float16Wire;
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /**
   * `MPI_Iallreduce` of `buffer` (a copy; `buffer` is not modified): `'sum'` gives `Σ_r x_r`,
   * `'mean'` gives `(Σ_r x_r) / worldSize` (one float32 division after the sum). The summation
   * order is MPI's, not rank order, but every rank receives the same bits.
   */
  async allReduce(buffer: Float32Array, options?: CollectiveOptions): Promise<Float32Array> {
    const where = 'MpiTransport.allReduce';
    checkLength(where, checkFloat32Buffer(where, 'buffer', buffer));
    const { op, precision, timeoutMs } = resolveCollectiveOptions(where, options, this.#defaultTimeoutMs);
    const wire = precision === 'float32' ? WIRE_CODES.float32 : WIRE_CODES[this.#float16Wire];
    const result = await this.#run('allReduce', timeoutMs, buffer, REDUCE_CODES[op], wire, 0);
    return result as Float32Array;
  }

  /** `MPI_Ibcast` from `root`: resolves with a new array holding the root's `buffer`. */
  async broadcast(buffer: Float32Array, root: number, options?: TimeoutOptions): Promise<Float32Array> {
    const where = 'MpiTransport.broadcast';
    checkLength(where, checkFloat32Buffer(where, 'buffer', buffer));
    checkRoot(where, root, this.worldSize);
    const timeoutMs = resolveTimeout(where, options, this.#defaultTimeoutMs);
    const result = await this.#run('broadcast', timeoutMs, buffer, 0, 0, root);
    return result as Float32Array;
  }

  /** `MPI_Ibarrier`: resolves once every rank has entered the barrier. */
  async barrier(options?: TimeoutOptions): Promise<void> {
    const timeoutMs = resolveTimeout('MpiTransport.barrier', options, this.#defaultTimeoutMs);
    await this.#run('barrier', timeoutMs, undefined, 0, 0, 0);
  }

  /**
   * Calls still in flight reject with `TransportClosedError` at once; the native thread lets
   * their MPI collectives finish (or reach their deadlines), then runs `MPI_Finalize` and stops.
   * When a collective that failed may still be pending inside MPI, `MPI_Finalize` is skipped (it
   * is erroneous then) and one line on stderr says so; `mpirun` then reports this rank as having
   * exited without finalising. Idempotent; MPI cannot be started again in this process.
   */
  close(): Promise<void> {
    if (this.#closing === undefined) {
      const closedError = (operation: CollectiveKind): Error => new TransportClosedError(operation, this.rank);
      this.#rejectPending(closedError);
      this.#closing = this.#addon.close().then((outcome) => {
        process.off('exit', this.#onExit);
        process.off('uncaughtExceptionMonitor', this.#onFatal);
        process.off('SIGTERM', this.#onTerminate);
        if (!outcome.finalized) this.#warn(outcome.message);
      });
    }
    return this.#closing;
  }

  /** Queues one collective on the native thread and translates its failure. */
  #run(
    operation: CollectiveKind,
    timeoutMs: number,
    buffer: Float32Array | undefined,
    reduceCode: number,
    wireCode: number,
    root: number,
  ): Promise<Float32Array | undefined> {
    if (this.#closing !== undefined) return Promise.reject(new TransportClosedError(operation, this.rank));
    if (this.#abort !== undefined) {
      return Promise.reject(new TransportAbortedError(operation, this.#abort.ranks, this.#abort.reason));
    }
    const sequence = this.#sequence++;
    const started = this.#addon.submit(
      NATIVE_KIND[operation],
      buffer,
      reduceCode,
      wireCode,
      root,
      timeoutMs,
      this.#checkAgreement,
    );
    return new Promise((resolve, reject) => {
      const call: PendingCall = { operation, reject };
      this.#pending.add(call);
      started.then(
        (result) => {
          if (this.#pending.delete(call)) resolve(result);
        },
        (error: unknown) => {
          if (this.#pending.delete(call)) reject(this.#translate(error, operation, sequence, timeoutMs));
        },
      );
    });
  }

  /** Turns the addon's `{ code, message }` errors into the `@mkor/allreduce` error classes. */
  #translate(error: unknown, operation: CollectiveKind, sequence: number, timeoutMs: number): Error {
    const code = (error as { code?: unknown }).code;
    const detail = error instanceof Error ? error.message : String(error);
    if (code === 'MISMATCH') return new TransportMismatchError(operation, sequence, detail);
    if (code === 'TIMEOUT') {
      const reason = `${operation} #${sequence} timed out after ${timeoutMs} ms`;
      this.#abort ??= { ranks: [], reason };
      const timeout = new TransportTimeoutError(operation, sequence, [], timeoutMs);
      timeout.message =
        `${reason} (MPI cannot tell which of the other ${this.worldSize - 1} rank(s) had not joined); ` +
        'the group is unusable from now on: close the transport';
      return timeout;
    }
    const reason = code === 'ABORTED' ? detail : `MPI error: ${detail}`;
    const failedRank = (error as { failedRank?: unknown }).failedRank;
    this.#abort ??= { ranks: typeof failedRank === 'number' ? [failedRank] : [], reason };
    return new TransportAbortedError(operation, this.#abort.ranks, reason);
  }

  #rejectPending(makeError: (operation: CollectiveKind) => Error): void {
    const calls = [...this.#pending];
    this.#pending.clear();
    for (const call of calls) call.reject(makeError(call.operation));
  }

  /** SIGTERM, normally from mpirun ending the job: say why, reject the calls in flight, exit. */
  #terminated(): void {
    const reason =
      'received SIGTERM: mpirun is ending the job, because another rank crashed, exited without MPI_Finalize ' +
      'or with a non-zero code, or because the job was interrupted (mpirun names the rank)';
    const exiting = process.listenerCount('SIGTERM') === 1;
    this.#warn(`${reason}; rejecting ${this.#pending.size} collective(s) in flight${exiting ? ' and exiting' : ''}`);
    this.#abort ??= { ranks: [], reason };
    const abort = this.#abort;
    this.#rejectPending((operation) => new TransportAbortedError(operation, abort.ranks, abort.reason));
    // The delay lets the rejections be handled (and logged) before mpirun's SIGKILL, 1 s after SIGTERM.
    if (exiting) setTimeout(() => process.exit(SIGTERM_EXIT_CODE), 200);
  }

  /**
   * process 'exit'. A normal exit (code 0, nothing in flight) finalises MPI. Any other exit — an
   * uncaught exception, an unhandled rejection, a non-zero code, or collectives still in flight —
   * cannot finalise (MPI_Finalize waits for every rank, and the others are waiting for this one):
   * it tells the other ranks why, so that their collectives fail at once naming this rank, and
   * exits without MPI_Finalize (mpirun then ends the job).
   */
  #finalizeAtExit(code: number): void {
    if (code === 0 && this.#fatal === undefined && this.#pending.size === 0) {
      const status = this.#addon.finalizeAtExit();
      if (status !== 'finalized') this.#warn(`exiting without MPI_Finalize (${status})`);
      return;
    }
    const notice = exitNotice(code, this.#fatal, this.#pending.size);
    const status = this.#addon.notifyExit(notice);
    const outcome = status === 'sent' ? 'told the other ranks' : `could not tell the other ranks: ${status}`;
    this.#warn(`exiting without MPI_Finalize: ${outcome} (${notice})`);
  }

  #warn(message: string): void {
    process.stderr.write(`[@mkor/mpi rank ${this.rank}/${this.worldSize}] ${message}\n`);
  }
}

/** The longest cause an exit notice quotes (the native side keeps at most 399 bytes in all). */
const NOTICE_CAUSE_CHARS = 240;

/** What an exiting rank tells the others, after "rank <r> ": "exited with code 1 after an uncaught exception: Error: boom". */
function exitNotice(code: number, fatal: { readonly error: unknown; readonly origin: string } | undefined, inFlight: number): string {
  let notice = `exited with code ${code}`;
  if (fatal !== undefined) {
    const what = fatal.origin === 'unhandledRejection' ? 'an unhandled rejection' : 'an uncaught exception';
    const error = fatal.error;
    const cause = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    notice += ` after ${what}: ${cause.length > NOTICE_CAUSE_CHARS ? `${cause.slice(0, NOTICE_CAUSE_CHARS)}…` : cause}`;
  }
  if (inFlight > 0) notice += ` with ${inFlight} collective(s) in flight`;
  return notice;
}

/** MPI counts are C `int`s. */
const MAX_ELEMENTS = 2 ** 31 - 1;

function checkLength(where: string, buffer: Float32Array): void {
  if (buffer.length > MAX_ELEMENTS) {
    throw new RangeError(`${where}: buffer must have at most ${MAX_ELEMENTS} elements (an MPI count), got ${buffer.length}`);
  }
}

function checkBoolean(where: string, name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new TypeError(`${where}: ${name} must be a boolean, got ${String(value)}`);
  return value;
}
