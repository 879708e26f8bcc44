/**
 * `@mkor/kfac` — KFAC (Martens & Grosse 2015; KAISA's defaults) built from the `@mkor` parts:
 * covariances from `@mkor/capture`, moving-average Kronecker factors, damped inverses from
 * `@mkor/linalg` every f steps, KL-clip or the `@mkor/grad-rescale` norm rescale, any
 * `@mkor/first-order` backend; as a transform and as a `tf.Optimizer`. Also exports the parts
 * KFAC and Eva share (common options, gradient matrices with the bias folded in, the
 * preconditioning step with KL-clip or rescale, the composition with a backend, the optimizer
 * base `SecondOrderOptimizer`).
 */
export { kfacPreconditioner, resolveKfacOptions } from './preconditioner';
export type {
  KfacLayerState,
  KfacOptions,
  KfacPreconditionerState,
  KfacStepMetrics,
  ResolvedKfacOptions,
} from './preconditioner';
export { kfac } from './kfac';
export type { KfacState, KfacTransform, KfacTransformOptions } from './kfac';
export { KfacOptimizer } from './optimizer';
export type { KfacOptimizerOptions } from './optimizer';
export { SecondOrderOptimizer } from './second-order-optimizer';
export type { SecondOrderMethod, SecondOrderOptimizerOptions } from './second-order-optimizer';
export {
  checkStatistics,
  foldedInputSize,
  klClipFactor,
  layerGradientMatrix,
  lazyLayers,
  outputGradientCount,
  preconditionLayers,
  resolveSecondOrderOptions,
  resolveUpdateScaling,
  scaleUpdates,
  splitLayerUpdate,
  validateLayers,
  withBackend,
} from './second-order-parts';
export type {
  LayerSource,
  PreconditionedLayers,
  ResolvedSecondOrderOptions,
  ResolvedUpdateScaling,
  SecondOrderOptions,
  SecondOrderState,
  SecondOrderStepMetrics,
  SecondOrderTransform,
  SecondOrderTransformOptions,
  UpdateScaling,
  UpdateScalingOptions,
} from './second-order-parts';
