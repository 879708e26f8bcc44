/**
 * `@mkor/rank1` — the rank-1 statistics MKOR folds into its inverse factors (Algorithm 1,
 * step 1): the mean input row `a` and the mean output-gradient row `g` of a layer, for dense
 * layers (any rank, rows = every axis but the last) and conv2d layers (patch statistics without
 * im2col), the rank-r generalisation, and the rank-1 approximation error of paper Fig. 5.
 */
export { blockSizes, rank1Vector, rankRVectors } from './rank1';
export type { Rank1Options } from './rank1';
export { conv2dGeometry, conv2dInputVector, conv2dOutputGradVector } from './conv2d';
export type { Conv2dGeometry, Conv2dInputOptions, Conv2dOutputGradOptions, SpatialPair } from './conv2d';
export { rank1ApproximationError } from './approximation-error';
