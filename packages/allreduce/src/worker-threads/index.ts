/**
 * `@mkor/allreduce/worker-threads` — the Node-only `worker_threads` transport: a group of ranks in
 * one process over a `SharedArrayBuffer` with `Atomics` (see {@link startWorkerGroup} and
 * {@link joinWorkerGroup}).
 */
export { DEFAULT_CHUNK_BYTES } from '../transport';
export { WorkerGroup, joinWorkerGroup, startWorkerGroup } from './group';
export type { WorkerExit, WorkerGroupOptions } from './group';
export { WorkerThreadsTransport } from './rank-transport';
