/**
 * `@mkor/eva` — Eva (Zhang et al., ICLR 2023) built from the `@mkor` parts: the Eva curvature
 * block (moving averages of the rank-1 vectors from `@mkor/capture`, no matrices, and the
 * closed-form Sherman–Morrison preconditioner of `(aaᵀ ⊗ ggᵀ + λI)`) in `@mkor/second-order`'s
 * layer loop (KL-clip or rescale, any first-order backend); as a block, a preconditioner, one
 * transform and a `tf.Optimizer`.
 */
export { EVA_BLOCK_KEYS, evaBlock, evaPrecondition, resolveEvaBlockOptions } from './block';
export type { EvaBlockOptions, EvaLayerState, ResolvedEvaBlockOptions } from './block';
export { EVA, eva, evaPreconditioner } from './eva';
export type { EvaOptions, EvaTransform, EvaTransformOptions } from './eva';
export { EvaOptimizer } from './optimizer';
export type { EvaOptimizerOptions } from './optimizer';
