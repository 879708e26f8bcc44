import { type Method, type MethodOptions, type MethodTransformOptions, type SecondOrderTransform, defineMethod } from '@mkor/second-order';

import { EVA_BLOCK_KEYS, type EvaBlockOptions, evaBlock, resolveEvaBlockOptions } from './block';

/** Options of Eva as a method: the block's and the layer loop's (default `scaling: 'kl-clip'`, which needs the `learningRate`). */
export type EvaOptions = MethodOptions<EvaBlockOptions>;

/** Options of {@link eva}: Eva's, plus its layers, the backend and the hybrid switch. */
export type EvaTransformOptions = MethodTransformOptions<EvaBlockOptions>;

/** The composed Eva transform (see `SecondOrderTransform` of `@mkor/second-order`). */
export type EvaTransform = SecondOrderTransform;

/** Eva as a method of `@mkor/second-order`: {@link evaBlock} in the layer loop, KL-clipped by default. */
export const EVA: Method<EvaBlockOptions> = defineMethod<EvaBlockOptions>({
  name: 'eva',
  blockKeys: EVA_BLOCK_KEYS,
  block: evaBlock,
  defaultScaling: 'kl-clip',
  config: (options, where) => {
    const resolved = resolveEvaBlockOptions(options, where);
    return { gamma: resolved.gamma as number, damping: resolved.damping as number };
  },
});

/**
 * The Eva preconditioner as a transform: {@link evaBlock} for every second-order layer in
 * `@mkor/second-order`'s layer loop, KL-clipped by default (give the backend's `learningRate`) or
 * rescaled. Other variables pass through. Chain a first-order transform after it; {@link eva} does.
 */
export const evaPreconditioner = EVA.preconditioner;

/**
 * Eva as one transform: `skipNonFinite(chain(evaPreconditioner(layers, options), backend))` (see
 * `secondOrder` of `@mkor/second-order`). A step whose gradients hold NaN or Inf, or whose result
 * would write NaN or Inf into the weights or the state, is refused whole and counted.
 */
export const eva: (options: EvaTransformOptions) => EvaTransform = EVA.transform;
