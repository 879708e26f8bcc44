import { decodeFloat16, encodeFloat16 } from '@mkor/fp16';

import { ABORT_DEPARTED, ABORT_KIND, ABORT_REPORTER, ABORT_SEQUENCE, ABORT_STATE, ABORT_TIMEOUT, ACTIVE, ARRIVED, CLOSED, CULPRIT, DOORBELL, EXITED, EXIT_CODE, HEADER_CHUNK, HEADER_KIND, HEADER_LENGTH, HEADER_OP, HEADER_PRECISION, HEADER_ROOT, KINDS, STATUS, SharedLayout, reached, waitAsync } from './shared-memory';
import type { GroupDescriptor } from './shared-memory';
import { accumulateInto, checkFloat32Buffer, checkRoot, finishReduction, resolveCollectiveOptions, resolveTimeout } from '../reduce';
import { describeMismatch } from '../request';
import type { CollectiveRequest } from '../request';
import { REDUCE_OPS, TransportAbortedError, TransportClosedError, TransportMismatchError, TransportTimeoutError, WIRE_PRECISIONS } from '../transport';
import type { CollectiveKind, CollectiveOptions, TimeoutOptions, Transport } from '../transport';

/** How long a rank polls shared memory before it sleeps, when spinning is on. */
const SPIN_MILLISECONDS = 0.1;

/**
 * One rank of a group of `worker_threads` in one process, communicating through a
 * `SharedArrayBuffer` with `Atomics` (see {@link startWorkerGroup} and {@link joinWorkerGroup}).
 *
 * Protocol: every collective is cut into rounds of at most `chunkBytes` per rank. In a round each
 * rank writes a header (kind, length, op, precision, root) and its chunk into its own region,
 * publishes the round number, then waits (`Atomics.waitAsync`, after a short spin when the group
 * has no more threads than cores) until every rank has published it; then it checks the headers
 * and sums all regions in rank order, in float32 (float16 on the wire when asked: regions then hold
 * IEEE half bits and carry twice the elements). Two alternating region sets make one
 * synchronisation per round enough: a rank can only overwrite a set after every rank has published
 * the next round, that is, finished reading it. All ranks compute the same sums in the same order,
 * so results are bit-identical to {@link reduceContributions}.
 *
 * Waiting never blocks the thread (`Atomics.waitAsync`), so a rank may live on the main thread
 * and compute while a collective is in flight.
 */
export class WorkerThreadsTransport implements Transport {
  /** This rank, in `[0, worldSize)`. */
  readonly rank: number;
  /** The number of ranks in the group. */
  readonly worldSize: number;
  readonly #layout: SharedLayout;
  readonly #chunkBytes: number;
  readonly #defaultTimeoutMs: number;
  readonly #spin: boolean;
  #round = 0;
  #sequence = 0;
  #queue: Promise<unknown> = Promise.resolve();
  #pending = 0;
  #keepAlive: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  /** @internal Made by {@link startWorkerGroup} (main-thread rank) or {@link joinWorkerGroup}. */
  constructor(descriptor: GroupDescriptor) {
    this.rank = descriptor.rank;
    this.worldSize = descriptor.worldSize;
    this.#chunkBytes = descriptor.chunkBytes;
    this.#defaultTimeoutMs = descriptor.timeoutMs;
    this.#spin = descriptor.spin;
    this.#layout = new SharedLayout(descriptor.memory, descriptor.worldSize, descriptor.chunkBytes);
  }

  allReduce(buffer: Float32Array, options?: CollectiveOptions): Promise<Float32Array> {
    const where = 'WorkerThreadsTransport.allReduce';
    return this.#start('allReduce', () => {
      checkFloat32Buffer(where, 'buffer', buffer);
      const { op, precision, timeoutMs } = resolveCollectiveOptions(where, options, this.#defaultTimeoutMs);
      return { request: { kind: 'allReduce', length: buffer.length, op, precision, root: 0 }, timeoutMs };
    }, (run) => this.#runAllReduce(buffer, run));
  }

  broadcast(buffer: Float32Array, root: number, options?: TimeoutOptions): Promise<Float32Array> {
    const where = 'WorkerThreadsTransport.broadcast';
    return this.#start('broadcast', () => {
      checkFloat32Buffer(where, 'buffer', buffer);
      checkRoot(where, root, this.worldSize);
      const timeoutMs = resolveTimeout(where, options, this.#defaultTimeoutMs);
      return { request: { kind: 'broadcast', length: buffer.length, op: 'sum', precision: 'float32', root }, timeoutMs };
    }, (run) => this.#runBroadcast(buffer, run));
  }

  async barrier(options?: TimeoutOptions): Promise<void> {
    await this.#start('barrier', () => {
      const timeoutMs = resolveTimeout('WorkerThreadsTransport.barrier', options, this.#defaultTimeoutMs);
      return { request: { kind: 'barrier', length: 0, op: 'sum', precision: 'float32', root: 0 }, timeoutMs };
    }, async (run) => {
      await this.#runRound(run, 0);
      return new Float32Array(0);
    });
  }

  /**
   * Leaves the group: marks this rank closed in shared memory (ranks waiting for it abort instead
   * of timing out), rejects calls not yet complete with {@link TransportClosedError} and waits
   * until they have settled. Idempotent.
   */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      Atomics.compareExchange(this.#layout.words, this.#layout.rankWord(this.rank, STATUS), ACTIVE, CLOSED);
      this.#layout.ring();
    }
    await this.#queue;
  }

  /** Validates a call, gives it its sequence number and deadline, and queues it behind earlier calls. */
  #start(
    kind: CollectiveKind,
    validate: () => { request: CollectiveRequest; timeoutMs: number },
    body: (run: RunningCollective) => Promise<Float32Array>,
  ): Promise<Float32Array> {
    let run: RunningCollective;
    try {
      const { request, timeoutMs } = validate();
      if (this.#closed) throw new TransportClosedError(kind, this.rank);
      run = { request, timeoutMs, sequence: this.#sequence++, deadline: performance.now() + timeoutMs };
    } catch (error) {
      return Promise.reject(error);
    }
    this.#pending += 1;
    this.#keepAlive ??= setInterval(() => undefined, 1e9);
    const result = this.#queue.then(() => body(run));
    this.#queue = result.then(
      () => this.#settled(),
      () => this.#settled(),
    );
    return result;
  }

  #settled(): void {
    this.#pending -= 1;
    if (this.#pending === 0 && this.#keepAlive !== undefined) {
      clearInterval(this.#keepAlive);
      this.#keepAlive = undefined;
    }
  }

  async #runAllReduce(buffer: Float32Array, run: RunningCollective): Promise<Float32Array> {
    const { length, precision, op } = run.request;
    const chunkElements = Math.floor(this.#chunkBytes / (precision === 'float16' ? 2 : 4));
    const result = new Float32Array(length);
    const scratch = precision === 'float16' ? new Float32Array(Math.min(length, chunkElements)) : undefined;
    const chunks = Math.max(1, Math.ceil(length / chunkElements));
    for (let chunk = 0; chunk < chunks; chunk++) {
      const start = chunk * chunkElements;
      const count = Math.min(length, start + chunkElements) - start;
      const source = buffer.subarray(start, start + count);
      const set = this.#nextRoundSet();
      if (precision === 'float16') encodeFloat16(source, this.#layout.float16Region(set, this.rank, count));
      else this.#layout.float32Region(set, this.rank, count).set(source);
      await this.#runRound(run, chunk);
      const sum = result.subarray(start, start + count);
      for (let rank = 0; rank < this.worldSize; rank++) {
        if (precision === 'float16') {
          const decoded = rank === 0 ? sum : (scratch as Float32Array).subarray(0, count);
          decodeFloat16(this.#layout.float16Region(set, rank, count), decoded);
          if (rank > 0) accumulateInto(sum, decoded);
        } else if (rank === 0) {
          sum.set(this.#layout.float32Region(set, rank, count));
        } else {
          accumulateInto(sum, this.#layout.float32Region(set, rank, count));
        }
      }
    }
    return finishReduction(result, op, this.worldSize);
  }

  async #runBroadcast(buffer: Float32Array, run: RunningCollective): Promise<Float32Array> {
    const { length, root } = run.request;
    const chunkElements = Math.floor(this.#chunkBytes / 4);
    const result = new Float32Array(length);
    const chunks = Math.max(1, Math.ceil(length / chunkElements));
    for (let chunk = 0; chunk < chunks; chunk++) {
      const start = chunk * chunkElements;
      const count = Math.min(length, start + chunkElements) - start;
      const set = this.#nextRoundSet();
      if (this.rank === root) this.#layout.float32Region(set, root, count).set(buffer.subarray(start, start + count));
      await this.#runRound(run, chunk);
      result.set(this.#layout.float32Region(set, root, count), start);
    }
    return result;
  }

  /** The region set the next round writes to (rounds alternate between the two sets). */
  #nextRoundSet(): number {
    return (this.#round + 1) & 1;
  }

  /**
   * One round: writes this rank's header, publishes the round, waits until every rank has
   * published it (or the group fails), then checks that all headers agree.
   */
  async #runRound(run: RunningCollective, chunk: number): Promise<void> {
    const { words } = this.#layout;
    const set = this.#nextRoundSet();
    const round = (this.#round + 1) | 0;
    this.#round = round;
    this.#checkUsable(run);
    const { request } = run;
    const header = [KINDS.indexOf(request.kind), request.length, REDUCE_OPS.indexOf(request.op),
      WIRE_PRECISIONS.indexOf(request.precision), request.root, chunk];
    header.forEach((value, field) => {
      words[this.#layout.headerWord(set, this.rank, field)] = value;
    });
    Atomics.store(words, this.#layout.rankWord(this.rank, ARRIVED), round);
    this.#layout.ring();
    await this.#awaitRound(run, round);
    this.#checkHeaders(run, set);
  }

  async #awaitRound(run: RunningCollective, round: number): Promise<void> {
    const { words } = this.#layout;
    const spinUntil = this.#spin ? performance.now() + SPIN_MILLISECONDS : 0;
    for (;;) {
      const bell = Atomics.load(words, DOORBELL);
      const missing: number[] = [];
      for (let rank = 0; rank < this.worldSize; rank++) {
        if (!reached(Atomics.load(words, this.#layout.rankWord(rank, ARRIVED)), round)) missing.push(rank);
      }
      // A round every rank published is complete, even if the group aborted since (a faster rank
      // may have moved on and failed in a later collective while this one slept): its regions stay
      // intact until this rank publishes the next round.
      if (missing.length === 0) return;
      this.#checkUsable(run);
      const departed = missing.filter((rank) => Atomics.load(words, this.#layout.rankWord(rank, STATUS)) !== ACTIVE);
      if (departed.length > 0) {
        this.#abortGroup(ABORT_DEPARTED, departed, run);
        throw this.#abortError(run.request.kind);
      }
      const now = performance.now();
      if (now >= run.deadline) {
        this.#abortGroup(ABORT_TIMEOUT, missing, run);
        throw new TransportTimeoutError(run.request.kind, run.sequence, missing, run.timeoutMs);
      }
      if (now < spinUntil) continue;
      const wait = waitAsync(words, DOORBELL, bell, run.deadline - now);
      if (wait.async) await wait.value;
    }
  }

  /** Throws when this transport is closed or the group aborted. */
  #checkUsable(run: RunningCollective): void {
    if (this.#closed) throw new TransportClosedError(run.request.kind, this.rank);
    if (Atomics.load(this.#layout.words, ABORT_STATE) !== 0) throw this.#abortError(run.request.kind);
  }

  #checkHeaders(run: RunningCollective, set: number): void {
    const { words } = this.#layout;
    const requestOf = (rank: number): CollectiveRequest & { chunk: number } => {
      const field = (index: number): number => words[this.#layout.headerWord(set, rank, index)] as number;
      return {
        kind: KINDS[field(HEADER_KIND)] ?? 'allReduce',
        length: field(HEADER_LENGTH),
        op: REDUCE_OPS[field(HEADER_OP)] ?? 'sum',
        precision: WIRE_PRECISIONS[field(HEADER_PRECISION)] ?? 'float32',
        root: field(HEADER_ROOT),
        chunk: field(HEADER_CHUNK),
      };
    };
    const first = requestOf(0);
    for (let rank = 1; rank < this.worldSize; rank++) {
      const other = requestOf(rank);
      const detail =
        describeMismatch(first, 0, other, rank) ??
        (first.chunk === other.chunk ? undefined : `rank 0 is at chunk ${first.chunk}, rank ${rank} at ${other.chunk}`);
      if (detail !== undefined) throw new TransportMismatchError(first.kind, run.sequence, detail);
    }
  }

  /** Records the first failure of the group in shared memory and wakes every rank. */
  #abortGroup(cause: number, culprits: readonly number[], run: RunningCollective): void {
    const { words } = this.#layout;
    if (Atomics.compareExchange(words, ABORT_STATE, 0, -1) !== 0) return;
    Atomics.store(words, ABORT_REPORTER, this.rank);
    Atomics.store(words, ABORT_SEQUENCE, run.sequence);
    Atomics.store(words, ABORT_KIND, KINDS.indexOf(run.request.kind));
    for (const rank of culprits) Atomics.store(words, this.#layout.rankWord(rank, CULPRIT), 1);
    Atomics.store(words, ABORT_STATE, cause);
    this.#layout.ring();
  }

  /** The error that describes the group's abort, as recorded in shared memory. */
  #abortError(operation: CollectiveKind): TransportAbortedError {
    const { words } = this.#layout;
    let cause = Atomics.load(words, ABORT_STATE);
    while (cause === -1) cause = Atomics.load(words, ABORT_STATE); // its writer is a few stores away
    const culprits: number[] = [];
    for (let rank = 0; rank < this.worldSize; rank++) {
      if (Atomics.load(words, this.#layout.rankWord(rank, CULPRIT)) === 1) culprits.push(rank);
    }
    const where = `${KINDS[Atomics.load(words, ABORT_KIND)]} #${Atomics.load(words, ABORT_SEQUENCE)}`;
    const reporter = Atomics.load(words, ABORT_REPORTER);
    const reason =
      cause === ABORT_TIMEOUT
        ? `rank ${reporter} timed out in ${where} waiting for rank(s) ${culprits.join(', ')}`
        : `${culprits.map((rank) => this.#describeDeparture(rank)).join(', ')} before joining ${where}`;
    return new TransportAbortedError(operation, culprits, reason);
  }

  #describeDeparture(rank: number): string {
    const { words } = this.#layout;
    return Atomics.load(words, this.#layout.rankWord(rank, STATUS)) === EXITED
      ? `rank ${rank} exited with code ${Atomics.load(words, this.#layout.rankWord(rank, EXIT_CODE))}`
      : `rank ${rank} closed`;
  }
}

/** A collective being run: what it asked for, its position, and when it must be done. */
interface RunningCollective {
  readonly request: CollectiveRequest;
  readonly sequence: number;
  readonly timeoutMs: number;
  readonly deadline: number;
}
