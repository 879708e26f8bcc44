/**
 * `@mkor/mkor` — MKOR (Mozaffari et al., NeurIPS 2023) composed from the `@mkor` parts: the MKOR
 * curvature block (inverse factors refreshed by the norm-based stabiliser and a Sherman–Morrison
 * step, or the authors' reference refresh), in `@mkor/second-order`'s layer loop, with a
 * first-order backend and MKOR-H's switch; as a block, a preconditioner, one transform and a
 * `tf.Optimizer`.
 */
export { lowRankFactorFor, mkorBlock, referenceRefresh, stabilizedRefresh } from './block';
export type { MkorLayerState } from './block';
export { MKOR, mkor, mkorPreconditioner } from './mkor';
export type { MkorTransform, MkorTransformOptions } from './mkor';
export { MKOR_BLOCK_KEYS, mkorLoopDefaults, resolveMkorBlockOptions } from './options';
export type { FactorUpdateForm, MkorBlockOptions, MkorOptions, ResolvedMkorBlockOptions, StabilizerNorm, StabilizerOptions } from './options';
export { MkorOptimizer } from './optimizer';
export type { MkorOptimizerOptions } from './optimizer';
