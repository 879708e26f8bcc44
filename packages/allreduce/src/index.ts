export {
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
export { DEFAULT_TIMEOUT_MS, InProcessTransport, SimulatedTransport, createSimulatedGroup } from './in-process';
export type { InProcessOptions } from './in-process';
export {
  DEFAULT_CHUNK_BYTES,
  WorkerGroup,
  WorkerThreadsTransport,
  joinWorkerGroup,
  startWorkerGroup,
} from './worker-threads';
export type { WorkerExit, WorkerGroupOptions } from './worker-threads';
export {
  BucketLayoutMismatchError,
  DEFAULT_BUCKET_BYTES,
  LAYOUT_CHECK_ELEMENTS,
  allReduceTensors,
  bucketedAllReduce,
  planBuckets,
} from './bucket';
export type { BucketOptions, BucketPlan } from './bucket';
