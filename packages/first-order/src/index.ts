export {
  addDecayedWeights,
  scaleByAdam,
  scaleByLearningRate,
  scaleByTrustRatio,
  traceMomentum,
} from './transforms';
export type {
  AddDecayedWeightsOptions,
  ParameterMask,
  ScaleByAdamOptions,
  ScaleByAdamState,
  ScaleByTrustRatioOptions,
  StepCountState,
  TraceMomentumOptions,
  TraceMomentumState,
} from './transforms';
export { adam, adamw, firstOrderFromConfig, lamb, sgd } from './optimizers';
export type { AdamOptions, AdamwOptions, FirstOrderConfig, FirstOrderName, LambOptions, Optimizer, SgdOptions } from './optimizers';
export { applyUpdates } from './apply-updates';
export { DEFAULT_LEARNING_RATE, backendFromConfig, notRebuildable, resolveBackend } from './backend';
export type { BackendOptions, BackendUse, ResolvedBackend } from './backend';
