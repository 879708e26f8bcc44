/**
 * `@mkor/allreduce` — the transport contract, bucketing, and the in-process and simulated
 * transports. This entry imports no Node built-in, so it bundles for the browser; the
 * `worker_threads` transport is Node-only, in `@mkor/allreduce/worker-threads`.
 */
export {
  DEFAULT_BUCKET_BYTES,
  DEFAULT_TIMEOUT_MS,
  REDUCE_OPS,
  TransportAbortedError,
  TransportClosedError,
  TransportError,
  TransportMismatchError,
  TransportTimeoutError,
  WIRE_PRECISIONS,
} from './transport';
export type {
  CollectiveKind,
  CollectiveOptions,
  ReduceOp,
  TimeoutOptions,
  Transport,
  WirePrecision,
} from './transport';
export {
  accumulateInto,
  checkFloat32Buffer,
  checkRoot,
  checkTimeout,
  finishReduction,
  reduceContributions,
  resolveCollectiveOptions,
  resolveTimeout,
  wireValues,
} from './reduce';
export type { ResolvedCollectiveOptions } from './reduce';
export { InProcessTransport, SimulatedTransport, createSimulatedGroup } from './in-process';
export type { InProcessOptions } from './in-process';
export {
  BucketLayoutMismatchError,
  LAYOUT_CHECK_ELEMENTS,
  allReduceTensors,
  bucketedAllReduce,
  planBuckets,
} from './bucket';
export type { BucketOptions, BucketPlan } from './bucket';
