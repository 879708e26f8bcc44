/**
 * `@mkor/capture` — captures what second-order optimizers need from TensorFlow.js models: for
 * every Dense and Conv2D layer (or a layer of any kind a table entry describes), on every
 * training step, the rank-1 statistics of MKOR Algorithm 1, step 1 (`a`, the mean input row,
 * and `g`, the mean gradient of the loss with respect to the pre-activation output row),
 * optionally KFAC's full covariances, paired per step, plus which variable belongs to which
 * layer. `prepareModel` does it for tfjs-layers models; `createCapture` for hand-written ones;
 * `CaptureOptimizer` is the base of the optimizers that read them; `DEFAULT_LAYER_KINDS` is the
 * table of layer kinds both use.
 */
export { prepareModel } from './prepare-model';
export type { PrepareModelOptions } from './prepare-model';
export { CONV2D_LAYER_KIND, DEFAULT_LAYER_KINDS, DENSE_LAYER_KIND } from './default-layer-kinds';
export type {
  GradientCount,
  Layer,
  LayerKindHandler,
  LinearLayerDescription,
  StatisticsFunctions,
  StatisticsOptions,
} from './layer-kind';
export type { PatchGeometry } from './covariance';
export { createCapture } from './create-capture';
export type { CaptureConv2dOptions, CreateCaptureOptions, ModelCapture } from './create-capture';
export { CaptureOptimizer, isCaptureRegistry } from './capture-optimizer';
export type { CaptureOptimizerOptions, PreparableModel } from './capture-optimizer';
export { extrasWithStatistics, statisticsOf } from './statistics-channel';
export type { StatisticsByLayer } from './statistics-channel';
export { DEFAULT_MAX_DIM } from './registry';
export type {
  CaptureRegistry,
  CovarianceStatistics,
  FirstOrderLayer,
  LayerKind,
  LayerStatistics,
  SecondOrderLayer,
} from './types';
