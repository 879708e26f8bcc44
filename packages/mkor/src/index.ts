export { mkor } from './mkor';
export type { MkorHybridOptions, MkorSecondOrderState, MkorState, MkorTransform, MkorTransformOptions } from './mkor';
export { mkorPreconditioner } from './preconditioner';
export type {
  LayerFactorState,
  MkorPreconditionerState,
  MkorStepMetrics,
  PreconditionedLayer,
  Rank1Statistics,
  StatisticsByLayer,
} from './preconditioner';
export { resolveMkorOptions } from './options';
export type {
  FactorUpdateForm,
  MkorOptions,
  RescaleMode,
  ResolvedMkorOptions,
  StabilizerNorm,
  StabilizerOptions,
} from './options';
export { MkorOptimizer } from './optimizer';
export type { MkorOptimizerOptions, PreparableModel } from './optimizer';
