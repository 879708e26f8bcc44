/**
 * `@mkor/eva` — Eva (Zhang et al., ICLR 2023) built from the `@mkor` parts: moving averages of
 * the rank-1 vectors from `@mkor/capture` (no matrices), the closed-form Sherman–Morrison
 * preconditioner of `(aaᵀ ⊗ ggᵀ + λI)`, KL-clip or the norm rescale, any first-order backend;
 * as a transform and as a `tf.Optimizer`.
 */
export { evaPrecondition, evaPreconditioner, resolveEvaOptions } from './preconditioner';
export type { EvaLayerState, EvaOptions, EvaPreconditionerState, EvaStepMetrics, ResolvedEvaOptions } from './preconditioner';
export { eva } from './eva';
export type { EvaState, EvaTransform, EvaTransformOptions } from './eva';
export { EvaOptimizer } from './optimizer';
export type { EvaOptimizerOptions } from './optimizer';
