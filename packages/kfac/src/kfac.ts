import type { Transform } from '@mkor/core';
import {
  type BlockPreconditionerState,
  type CompositionOptions,
  type LayerSource,
  type SecondOrderOptions,
  type SecondOrderTransform,
  blockPreconditioner,
  secondOrder,
  splitMethodOptions,
} from '@mkor/second-order';

import { KFAC_BLOCK_KEYS, type KfacBlockOptions, kfacBlock } from './block';

/** Options of KFAC as a method: the block's and the layer loop's (default `scaling: 'kl-clip'`, which needs the `learningRate`). */
export interface KfacOptions extends KfacBlockOptions, SecondOrderOptions {}

/**
 * The KFAC preconditioner as a transform: {@link kfacBlock} for every second-order layer in
 * `@mkor/second-order`'s layer loop, whose updates are KL-clipped by default
 * (`ν = min(1, sqrt(κ / |Σ ΔW·∇W·lr²|))`; give the backend's `learningRate`) or rescaled. Other
 * variables pass through. The statistics must carry covariances (capture with `{ covariance: true }`).
 * Chain a first-order transform after it; {@link kfac} does.
 */
export function kfacPreconditioner(layers: LayerSource, options: KfacOptions = {}): Transform<BlockPreconditionerState> {
  const where = 'kfacPreconditioner';
  const { block, loop } = splitMethodOptions(where, options, KFAC_BLOCK_KEYS);
  return blockPreconditioner(layers, { ...loop, blocks: kfacBlock(block, where) }, where, 'kl-clip');
}

/** Options of {@link kfac}: KFAC's, plus its layers (captured with `{ covariance: true }`), the backend and the hybrid switch. */
export interface KfacTransformOptions extends KfacOptions, CompositionOptions {
  readonly layers: LayerSource;
}

/** The composed KFAC transform (see `SecondOrderTransform` of `@mkor/second-order`). */
export type KfacTransform = SecondOrderTransform;

/**
 * KFAC as one transform: `skipNonFinite(chain(kfacPreconditioner(layers, options), backend))` (see
 * `secondOrder` of `@mkor/second-order`). A step whose gradients hold NaN or Inf, or whose result
 * would write NaN or Inf into the weights or the state, is refused whole and counted.
 */
export function kfac(options: KfacTransformOptions): KfacTransform {
  const where = 'kfac';
  if (options === null || typeof options !== 'object') throw new TypeError(`${where}: options must be an object, got ${String(options)}`);
  const { layers, backend, hybrid, ...methodOptions } = options;
  const { block, loop } = splitMethodOptions(where, methodOptions, KFAC_BLOCK_KEYS);
  return secondOrder({ layers, backend, ...(hybrid === undefined ? {} : { hybrid }), ...loop, blocks: kfacBlock(block, where) }, where, 'kl-clip');
}
