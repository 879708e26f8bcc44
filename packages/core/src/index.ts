export { chain, scaleBy } from './transform';
export type { StateOf, TensorMap, Transform, TransformResult, UpdateContext } from './transform';
export {
  cosineDecay,
  exponentialDecay,
  linearSchedule,
  resolveHyperparameter,
  withWarmup,
} from './schedule';
export type { Hyperparameter, Schedule } from './schedule';
export { applyTransform, disposeReplaced, tensorsIn } from './memory';
export {
  allFinite,
  checkFinite,
  checkFloat32,
  checkHyperparameter,
  checkKnownOptions,
  checkNumber,
  checkOneOf,
  checkRank,
  checkSpatialPair,
  checkSquareMatrix,
  checkLayerCoverage,
  checkVector,
  finiteFlag,
  hyperparameterAt,
} from './validation';
export type { NumberBounds } from './validation';
export { FUSED_KERNELS, hasFusedKernel, runFusedKernel } from './fused';
export type { FusedKernel } from './fused';
export type { HeapGemm, HeapGemmCall } from './heap-gemm';
export { ADD_ALL_GROUP_SIZE, addAll } from './add-all';
export { selectByScalar } from './select';
export { skipCounts, skipCountsAsync, skipNonFinite } from './guard';
export type { GuardDecisions, SkipCounts, SkipNonFiniteOptions, SkipNonFiniteState } from './guard';
export { flattenState, restoreState } from './state-io';
export type { NamedStateTensor, StateIoOptions } from './state-io';
export { CHECKPOINT_FORMAT, TransformOptimizer } from './optimizer';
export type { TransformOptimizerOptions } from './optimizer';
export { requireFloat32Textures, type TextureEnvironment } from './float32-textures';
