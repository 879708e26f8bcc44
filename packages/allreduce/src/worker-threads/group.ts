import { availableParallelism } from 'node:os';
import { Worker, isMainThread, workerData } from 'node:worker_threads';

import { checkNumber } from '@mkor/core';

import { ACTIVE, EXITED, EXIT_CODE, STATUS, SharedLayout } from './shared-memory';
import type { GroupDescriptor } from './shared-memory';
import { WorkerThreadsTransport } from './rank-transport';
import { checkTimeout } from '../reduce';
import { DEFAULT_CHUNK_BYTES, DEFAULT_TIMEOUT_MS } from '../transport';

/** The `workerData` key under which {@link startWorkerGroup} hands a worker its place in the group. */
const WORKER_DATA_KEY = '@mkor/allreduce';

/** Options of {@link startWorkerGroup}. */
export interface WorkerGroupOptions {
  /** Ranks in the group, ≥ 1 (workers started: this, or one fewer with `includeMainThread`). */
  readonly worldSize: number;
  /** The module each worker runs (a path or `file:` URL; see `new Worker`); it calls {@link joinWorkerGroup}. */
  readonly module: string | URL;
  /** Passed to every worker; {@link joinWorkerGroup} returns it as `data`. Structured-cloned. */
  readonly workerData?: unknown;
  /** The default timeout of the ranks' collectives (ms, > 0, or `Infinity`). Default {@link DEFAULT_TIMEOUT_MS}. */
  readonly timeoutMs?: number;
  /** Bytes of each rank's staging region per round, a multiple of 8, ≥ 64. Default {@link DEFAULT_CHUNK_BYTES}. */
  readonly chunkBytes?: number;
  /**
   * Poll shared memory for ~0.1 ms before sleeping: cuts latency when every rank has a core, and
   * makes it far worse when threads outnumber cores. `'auto'` (default): spin when `worldSize` ≤
   * `os.availableParallelism()`.
   */
  readonly spin?: boolean | 'auto';
  /** Node flags for the workers (e.g. `['--import', 'tsx']` to run a TypeScript module). */
  readonly execArgv?: readonly string[];
  /** Make this thread rank 0 (then `group.transport` is its transport) and start `worldSize − 1` workers. Default false. */
  readonly includeMainThread?: boolean;
}

/** How a worker of a {@link WorkerGroup} ended. */
export interface WorkerExit {
  readonly rank: number;
  readonly exitCode: number;
  /** The uncaught error that ended it, if one did. */
  readonly error: unknown;
}

/**
 * The workers of a group started by {@link startWorkerGroup}, seen from the thread that started
 * them. It watches them: a worker that exits without closing its transport is marked in shared
 * memory, so ranks waiting for it fail at once with a {@link TransportAbortedError}.
 */
export class WorkerGroup {
  /** Resolves, in rank order, once every worker has exited. Never rejects. */
  readonly exited: Promise<readonly WorkerExit[]>;

  /** @internal Made by {@link startWorkerGroup}. */
  constructor(
    /** Ranks in the group, the main thread's included. */
    readonly worldSize: number,
    /** The workers and their ranks. */
    readonly workers: readonly { readonly rank: number; readonly worker: Worker }[],
    /** This thread's transport (rank 0) when it was started with `includeMainThread`. */
    readonly transport: WorkerThreadsTransport | undefined,
    layout: SharedLayout,
  ) {
    const exits = workers.map(
      ({ rank, worker }) =>
        new Promise<WorkerExit>((resolve) => {
          let error: unknown;
          worker.on('error', (thrown) => {
            error = thrown;
          });
          worker.on('exit', (exitCode) => {
            Atomics.store(layout.words, layout.rankWord(rank, EXIT_CODE), exitCode);
            Atomics.compareExchange(layout.words, layout.rankWord(rank, STATUS), ACTIVE, EXITED);
            layout.ring();
            resolve({ rank, exitCode, error });
          });
        }),
    );
    this.exited = Promise.all(exits);
  }

  /**
   * Shuts the group down: closes this thread's transport (if any), terminates the workers still
   * running and resolves once every worker has exited. Workers that already finished keep their
   * exit code; terminated ones report code 1.
   */
  async close(): Promise<readonly WorkerExit[]> {
    await this.transport?.close();
    await Promise.all(this.workers.map(({ worker }) => worker.terminate()));
    return this.exited;
  }
}

/**
 * Starts a group of `worker_threads` that all-reduce through shared memory: allocates the
 * `SharedArrayBuffer`, starts one worker per rank running `options.module` (which calls
 * {@link joinWorkerGroup} to get its {@link WorkerThreadsTransport}), and watches them.
 *
 * @example
 * const group = startWorkerGroup({ worldSize: 4, module: new URL('./train-worker.js', import.meta.url) });
 * const exits = await group.exited; // or group.close() to stop them
 */
export function startWorkerGroup(options: WorkerGroupOptions): WorkerGroup {
  const where = 'startWorkerGroup';
  const worldSize = checkNumber(where, 'worldSize', options.worldSize, { min: 1, integer: true });
  const timeoutMs = checkTimeout(where, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const chunkBytes = checkNumber(where, 'chunkBytes', options.chunkBytes ?? DEFAULT_CHUNK_BYTES, {
    min: 64,
    integer: true,
  });
  if (chunkBytes % 8 !== 0) throw new RangeError(`${where}: chunkBytes must be a multiple of 8, got ${chunkBytes}`);
  const spinOption = options.spin ?? 'auto';
  if (spinOption !== 'auto' && typeof spinOption !== 'boolean') {
    throw new RangeError(`${where}: spin must be true, false or 'auto', got ${String(spinOption)}`);
  }
  const spin = spinOption === 'auto' ? worldSize <= availableParallelism() : spinOption;
  if (!(typeof options.module === 'string' || options.module instanceof URL)) {
    throw new TypeError(`${where}: module must be a path or a URL, got ${typeof options.module}`);
  }
  const memory = new SharedArrayBuffer(SharedLayout.byteLength(worldSize, chunkBytes));
  const layout = new SharedLayout(memory, worldSize, chunkBytes);
  const descriptor = (rank: number): GroupDescriptor => ({ memory, worldSize, rank, chunkBytes, timeoutMs, spin });
  const firstWorkerRank = options.includeMainThread ? 1 : 0;
  const workers = Array.from({ length: worldSize - firstWorkerRank }, (_, index) => {
    const rank = firstWorkerRank + index;
    const worker = new Worker(options.module, {
      workerData: { [WORKER_DATA_KEY]: descriptor(rank), data: options.workerData },
      ...(options.execArgv ? { execArgv: [...options.execArgv] } : {}),
    });
    return { rank, worker };
  });
  const transport = options.includeMainThread ? new WorkerThreadsTransport(descriptor(0)) : undefined;
  return new WorkerGroup(worldSize, workers, transport, layout);
}

/**
 * Called inside a worker started by {@link startWorkerGroup}: returns this worker's transport and
 * the `workerData` given to the group. Throws when this thread was not started that way.
 */
export function joinWorkerGroup<T = unknown>(): { transport: WorkerThreadsTransport; data: T } {
  const handed = (workerData as Record<string, unknown> | null | undefined)?.[WORKER_DATA_KEY];
  if (isMainThread || handed === undefined) {
    throw new Error('joinWorkerGroup: this thread was not started by startWorkerGroup');
  }
  const { data } = workerData as { data: T };
  return { transport: new WorkerThreadsTransport(handed as GroupDescriptor), data };
}
