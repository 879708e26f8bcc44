/**
 * `@mkor/kfac` — KFAC (Martens & Grosse 2015; KAISA's defaults) built from the `@mkor` parts: the
 * KFAC curvature block (moving-average Kronecker factors of the captured covariances, damped
 * inverses from `@mkor/linalg` every f steps) in `@mkor/second-order`'s layer loop (KL-clip or
 * rescale, any `@mkor/first-order` backend); as a block, a preconditioner, one transform and a
 * `tf.Optimizer`.
 */
export { KFAC_BLOCK_KEYS, kfacBlock, resolveKfacBlockOptions } from './block';
export type { KfacBlockOptions, KfacLayerState, ResolvedKfacBlockOptions } from './block';
export { KFAC, kfac, kfacPreconditioner } from './kfac';
export type { KfacOptions, KfacTransform, KfacTransformOptions } from './kfac';
export { KfacOptimizer } from './optimizer';
export type { KfacOptimizerOptions } from './optimizer';
