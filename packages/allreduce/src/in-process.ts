import { checkNumber } from '@mkor/core';

import {
  checkFloat32Buffer,
  checkRoot,
  checkTimeout,
  reduceContributions,
  resolveCollectiveOptions,
  resolveTimeout,
} from './reduce';
import {
  DEFAULT_TIMEOUT_MS,
  TransportAbortedError,
  TransportClosedError,
  TransportMismatchError,
  TransportTimeoutError,
} from './transport';
import { describeMismatch } from './request';
import type { CollectiveRequest as Request } from './request';
import type { CollectiveKind, CollectiveOptions, TimeoutOptions, Transport } from './transport';

/** Options of {@link InProcessTransport} and {@link createSimulatedGroup}. */
export interface InProcessOptions {
  /** The timeout of calls that pass none (ms, > 0, or `Infinity`). Default {@link DEFAULT_TIMEOUT_MS}. */
  readonly timeoutMs?: number;
}

/**
 * The transport of a single process that trains alone (world size 1): `allReduce` returns a copy
 * of the buffer (`'sum'` and `'mean'` agree when there is one rank), or with `precision:
 * 'float16'` the buffer rounded to float16 and back, exactly what a one-rank group would compute.
 * Every call resolves at once. Lets code written for data parallelism run unchanged on one machine.
 */
export class InProcessTransport implements Transport {
  /** Always 0. */
  readonly rank = 0;
  /** Always 1. */
  readonly worldSize = 1;
  readonly #defaultTimeoutMs: number;
  #closed = false;

  constructor(options: InProcessOptions = {}) {
    this.#defaultTimeoutMs = checkTimeout('InProcessTransport', options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  }

  async allReduce(buffer: Float32Array, options?: CollectiveOptions): Promise<Float32Array> {
    const where = 'InProcessTransport.allReduce';
    checkFloat32Buffer(where, 'buffer', buffer);
    const { op, precision } = resolveCollectiveOptions(where, options, this.#defaultTimeoutMs);
    this.#checkOpen('allReduce');
    return reduceContributions([buffer], op, precision);
  }

  async broadcast(buffer: Float32Array, root: number, options?: TimeoutOptions): Promise<Float32Array> {
    const where = 'InProcessTransport.broadcast';
    checkFloat32Buffer(where, 'buffer', buffer);
    checkRoot(where, root, this.worldSize);
    resolveTimeout(where, options, this.#defaultTimeoutMs);
    this.#checkOpen('broadcast');
    return Float32Array.from(buffer);
  }

  async barrier(options?: TimeoutOptions): Promise<void> {
    resolveTimeout('InProcessTransport.barrier', options, this.#defaultTimeoutMs);
    this.#checkOpen('barrier');
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #checkOpen(operation: CollectiveKind): void {
    if (this.#closed) throw new TransportClosedError(operation, this.rank);
  }
}

/** One call waiting in a {@link createSimulatedGroup} collective. */
interface Waiter {
  readonly resolve: (result: Float32Array) => void;
  readonly reject: (error: Error) => void;
  readonly timer: ReturnType<typeof setTimeout> | undefined;
}

/** One collective (the k-th call of every rank) while ranks join it. */
interface Slot {
  readonly sequence: number;
  /** The request of the first rank that joined, which the others are compared with. */
  readonly request: Request;
  readonly firstRank: number;
  readonly contributions: (Float32Array | undefined)[];
  readonly waiters: Map<number, Waiter>;
  arrivals: number;
  mismatch: TransportMismatchError | undefined;
}

/** The shared state of a simulated group: who has joined which collective. */
class SimulatedGroup {
  readonly slots = new Map<number, Slot>();
  readonly callCounts: number[];
  readonly closed: boolean[];
  abort: { readonly ranks: readonly number[]; readonly reason: string } | undefined;

  constructor(readonly worldSize: number) {
    this.callCounts = new Array<number>(worldSize).fill(0);
    this.closed = new Array<boolean>(worldSize).fill(false);
  }

  join(rank: number, request: Request, buffer: Float32Array, timeoutMs: number): Promise<Float32Array> {
    if (this.closed[rank]) return Promise.reject(new TransportClosedError(request.kind, rank));
    if (this.abort) {
      return Promise.reject(new TransportAbortedError(request.kind, this.abort.ranks, this.abort.reason));
    }
    const sequence = this.callCounts[rank] as number;
    this.callCounts[rank] = sequence + 1;
    const departed = this.closed.flatMap((closed, r) => (closed && (this.callCounts[r] as number) <= sequence ? [r] : []));
    if (departed.length > 0) {
      this.#abortGroup(departed, `rank(s) ${departed.join(', ')} closed before joining ${request.kind} #${sequence}`);
      return Promise.reject(new TransportAbortedError(request.kind, this.abort!.ranks, this.abort!.reason));
    }
    let slot = this.slots.get(sequence);
    if (slot === undefined) {
      slot = {
        sequence,
        request,
        firstRank: rank,
        contributions: new Array<Float32Array | undefined>(this.worldSize).fill(undefined),
        waiters: new Map(),
        arrivals: 0,
        mismatch: undefined,
      };
      this.slots.set(sequence, slot);
    }
    const detail = describeMismatch(slot.request, slot.firstRank, request, rank);
    if (detail !== undefined && slot.mismatch === undefined) {
      slot.mismatch = new TransportMismatchError(slot.request.kind, sequence, detail);
      for (const waiter of slot.waiters.values()) this.#settle(waiter, slot.mismatch);
      slot.waiters.clear();
    }
    slot.contributions[rank] = Float32Array.from(buffer);
    slot.arrivals += 1;
    if (slot.arrivals === this.worldSize) this.slots.delete(sequence);
    if (slot.mismatch) return Promise.reject(slot.mismatch);
    if (slot.arrivals === this.worldSize) {
      const result = this.#combine(slot);
      for (const waiter of slot.waiters.values()) this.#settle(waiter, Float32Array.from(result));
      return Promise.resolve(result);
    }
    const pending = slot;
    return new Promise<Float32Array>((resolve, reject) => {
      const timer = Number.isFinite(timeoutMs)
        ? setTimeout(() => {
            pending.waiters.delete(rank);
            const missing = pending.contributions.flatMap((c, r) => (c === undefined ? [r] : []));
            const error = new TransportTimeoutError(request.kind, sequence, missing, timeoutMs);
            this.#abortGroup(missing, `rank ${rank} timed out in ${request.kind} #${sequence} waiting for rank(s) ${missing.join(', ')}`);
            reject(error);
          }, timeoutMs)
        : undefined;
      pending.waiters.set(rank, { resolve, reject, timer });
    });
  }

  close(rank: number): void {
    if (this.closed[rank]) return;
    this.closed[rank] = true;
    const stranded: number[] = [];
    for (const slot of this.slots.values()) {
      const own = slot.waiters.get(rank);
      if (own) {
        slot.waiters.delete(rank);
        this.#settle(own, new TransportClosedError(slot.request.kind, rank));
      }
      if (slot.contributions[rank] === undefined && slot.waiters.size > 0) stranded.push(slot.sequence);
    }
    if (stranded.length > 0) {
      this.#abortGroup([rank], `rank ${rank} closed before joining collective #${Math.min(...stranded)}`);
    }
  }

  #combine(slot: Slot): Float32Array {
    const contributions = slot.contributions as Float32Array[];
    const { kind, op, precision, root } = slot.request;
    if (kind === 'allReduce') return reduceContributions(contributions, op, precision);
    if (kind === 'broadcast') return Float32Array.from(contributions[root] as Float32Array);
    return new Float32Array(0);
  }

  #settle(waiter: Waiter, outcome: Float32Array | Error): void {
    if (waiter.timer !== undefined) clearTimeout(waiter.timer);
    if (outcome instanceof Error) waiter.reject(outcome);
    else waiter.resolve(outcome);
  }

  #abortGroup(ranks: readonly number[], reason: string): void {
    if (this.abort) return;
    this.abort = { ranks, reason };
    for (const slot of this.slots.values()) {
      for (const waiter of slot.waiters.values()) {
        this.#settle(waiter, new TransportAbortedError(slot.request.kind, ranks, reason));
      }
    }
    this.slots.clear();
  }
}

/**
 * One rank of a group made by {@link createSimulatedGroup}: all ranks live in this thread and
 * really reduce among themselves, with the semantics of the multi-process transports (matching
 * by call order, several calls in flight, mismatch detection, timeouts naming the missing ranks,
 * aborts when a rank times out or closes while others wait for it).
 */
export class SimulatedTransport implements Transport {
  readonly #group: SimulatedGroup;
  readonly #defaultTimeoutMs: number;

  /** @internal Made by {@link createSimulatedGroup}. */
  constructor(
    group: SimulatedGroup,
    /** This rank, in `[0, worldSize)`. */
    readonly rank: number,
    defaultTimeoutMs: number,
  ) {
    this.#group = group;
    this.#defaultTimeoutMs = defaultTimeoutMs;
  }

  /** The number of ranks in the group. */
  get worldSize(): number {
    return this.#group.worldSize;
  }

  async allReduce(buffer: Float32Array, options?: CollectiveOptions): Promise<Float32Array> {
    const where = 'SimulatedTransport.allReduce';
    checkFloat32Buffer(where, 'buffer', buffer);
    const { op, precision, timeoutMs } = resolveCollectiveOptions(where, options, this.#defaultTimeoutMs);
    const request: Request = { kind: 'allReduce', length: buffer.length, op, precision, root: 0 };
    return this.#group.join(this.rank, request, buffer, timeoutMs);
  }

  async broadcast(buffer: Float32Array, root: number, options?: TimeoutOptions): Promise<Float32Array> {
    const where = 'SimulatedTransport.broadcast';
    checkFloat32Buffer(where, 'buffer', buffer);
    checkRoot(where, root, this.worldSize);
    const timeoutMs = resolveTimeout(where, options, this.#defaultTimeoutMs);
    const request: Request = { kind: 'broadcast', length: buffer.length, op: 'sum', precision: 'float32', root };
    return this.#group.join(this.rank, request, buffer, timeoutMs);
  }

  async barrier(options?: TimeoutOptions): Promise<void> {
    const timeoutMs = resolveTimeout('SimulatedTransport.barrier', options, this.#defaultTimeoutMs);
    const request: Request = { kind: 'barrier', length: 0, op: 'sum', precision: 'float32', root: 0 };
    await this.#group.join(this.rank, request, new Float32Array(0), timeoutMs);
  }

  async close(): Promise<void> {
    this.#group.close(this.rank);
  }
}

/**
 * `worldSize` transports in this thread that reduce among themselves: rank r is element r. For
 * testing multi-rank logic (optimizers, bucketing) without processes or threads. Results are
 * bit-identical to the other transports of this package (see `reduceContributions`).
 */
export function createSimulatedGroup(worldSize: number, options: InProcessOptions = {}): SimulatedTransport[] {
  checkNumber('createSimulatedGroup', 'worldSize', worldSize, { min: 1, integer: true });
  const timeoutMs = checkTimeout('createSimulatedGroup', options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const group = new SimulatedGroup(worldSize);
  return Array.from({ length: worldSize }, (_, rank) => new SimulatedTransport(group, rank, timeoutMs));
}
