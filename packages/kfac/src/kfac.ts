import { type Method, type MethodOptions, type MethodTransformOptions, type SecondOrderTransform, defineMethod } from '@mkor/second-order';

import { KFAC_BLOCK_KEYS, type KfacBlockOptions, kfacBlock, resolveKfacBlockOptions } from './block';

/** Options of KFAC as a method: the block's and the layer loop's (default `scaling: 'kl-clip'`, which needs the `learningRate`). */
export type KfacOptions = MethodOptions<KfacBlockOptions>;

/** Options of {@link kfac}: KFAC's, plus its layers (captured with `{ covariance: true }`), the backend and the hybrid switch. */
export type KfacTransformOptions = MethodTransformOptions<KfacBlockOptions>;

/** The composed KFAC transform (see `SecondOrderTransform` of `@mkor/second-order`). */
export type KfacTransform = SecondOrderTransform;

/** KFAC as a method of `@mkor/second-order`: {@link kfacBlock} in the layer loop, KL-clipped by default. */
export const KFAC: Method<KfacBlockOptions> = defineMethod<KfacBlockOptions>({
  name: 'kfac',
  blockKeys: KFAC_BLOCK_KEYS,
  block: kfacBlock,
  defaultScaling: 'kl-clip',
  config: (options, where) => {
    const resolved = resolveKfacBlockOptions(options, where);
    return {
      gamma: resolved.gamma as number,
      damping: resolved.damping as number,
      factorUpdateInterval: resolved.factorUpdateInterval as number,
      inverseInterval: resolved.inverseInterval as number,
    };
  },
});

/**
 * The KFAC preconditioner as a transform: {@link kfacBlock} for every second-order layer in
 * `@mkor/second-order`'s layer loop, whose updates are KL-clipped by default
 * (`ν = min(1, sqrt(κ / |Σ ΔW·∇W·lr²|))`; give the backend's `learningRate`) or rescaled. Other
 * variables pass through. The statistics must carry covariances (capture with `{ covariance: true }`).
 * Chain a first-order transform after it; {@link kfac} does.
 */
export const kfacPreconditioner = KFAC.preconditioner;

/**
 * KFAC as one transform: `skipNonFinite(chain(kfacPreconditioner(layers, options), backend))` (see
 * `secondOrder` of `@mkor/second-order`). A step whose gradients hold NaN or Inf, or whose result
 * would write NaN or Inf into the weights or the state, is refused whole and counted.
 */
export const kfac: (options: KfacTransformOptions) => KfacTransform = KFAC.transform;
