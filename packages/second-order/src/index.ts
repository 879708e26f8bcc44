/**
 * `@mkor/second-order` — the machinery MKOR, KFAC and Eva share, shaped like kfac-jax's curvature
 * blocks and optax's transforms: a per-layer {@link CurvatureBlock} (`init`, `absorb` the factor
 * refresh, `precondition`), one layer loop ({@link blockPreconditioner}) that owns validation, bias
 * folding, gradient scaling, update scaling, metrics and timing, its composition with a first-order
 * backend and the hybrid switch ({@link secondOrder}), and one `tf.Optimizer` adapter
 * ({@link SecondOrderOptimizer}). A method is a block; a model may use a block per layer.
 */
export { asBlockChoice, blocksByLayer, kroneckerPrecondition } from './block';
export type { Absorbed, BlockChoice, BlockRule, BlockStep, CurvatureBlock } from './block';
export { blockLayer, lazyLayers, layerGradientMatrix, splitKernelAndBias, splitLayerUpdate, validateLayers } from './layers';
export type { BlockLayer, LayerSource } from './layers';
export { checkStatistics, outputGradientCount, prepareStatistics } from './statistics';
export type { BlockStatistics, GradientScale } from './statistics';
export { UPDATE_SCALINGS, klClipFactor, scaleLayerUpdates } from './scaling';
export type { LayerUpdate, ResolvedUpdateScaling, UpdateScaling } from './scaling';
export { RENAMED_OPTIONS, SECOND_ORDER_OPTION_KEYS, resolveSecondOrderOptions, splitMethodOptions } from './options';
export type { ResolvedSecondOrderOptions, SecondOrderOptions } from './options';
export { blockPreconditioner, readTotals, readTotalsAsync, resolveBlockPreconditionerOptions } from './preconditioner';
export type {
  BlockPreconditionerOptions,
  BlockPreconditionerState,
  LayerBlockState,
  ResolvedBlockPreconditionerOptions,
  SecondOrderStepMetrics,
  SecondOrderTotals,
} from './preconditioner';
export { secondOrder, withBackend } from './compose';
export type { CompositionOptions, HybridOptions, PreconditionerPart, SecondOrderState, SecondOrderTransform, SecondOrderTransformOptions } from './compose';
export { defineMethod } from './method';
export type { Method, MethodDefinition, MethodOptions, MethodTransformOptions } from './method';
export { SecondOrderOptimizer } from './optimizer';
export type { SecondOrderMethod, SecondOrderMethodFactory, SecondOrderOptimizerOptions, SecondOrderOptimizerTotals } from './optimizer';
