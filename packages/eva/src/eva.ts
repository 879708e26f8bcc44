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

import { EVA_BLOCK_KEYS, type EvaBlockOptions, evaBlock } from './block';

/** Options of Eva as a method: the block's and the layer loop's (default `scaling: 'kl-clip'`, which needs the `learningRate`). */
export interface EvaOptions extends EvaBlockOptions, SecondOrderOptions {}

/**
 * The Eva preconditioner as a transform: {@link evaBlock} for every second-order layer in
 * `@mkor/second-order`'s layer loop, KL-clipped by default (give the backend's `learningRate`) or
 * rescaled. Other variables pass through. Chain a first-order transform after it; {@link eva} does.
 */
export function evaPreconditioner(layers: LayerSource, options: EvaOptions = {}): Transform<BlockPreconditionerState> {
  const where = 'evaPreconditioner';
  const { block, loop } = splitMethodOptions(where, options, EVA_BLOCK_KEYS);
  return blockPreconditioner(layers, { ...loop, blocks: evaBlock(block, where) }, where, 'kl-clip');
}

/** Options of {@link eva}: Eva's, plus its layers, the backend and the hybrid switch. */
export interface EvaTransformOptions extends EvaOptions, CompositionOptions {
  readonly layers: LayerSource;
}

/** The composed Eva transform (see `SecondOrderTransform` of `@mkor/second-order`). */
export type EvaTransform = SecondOrderTransform;

/**
 * Eva as one transform: `skipNonFinite(chain(evaPreconditioner(layers, options), backend))` (see
 * `secondOrder` of `@mkor/second-order`). A step whose gradients hold NaN or Inf, or whose result
 * would write NaN or Inf into the weights or the state, is refused whole and counted.
 */
export function eva(options: EvaTransformOptions): EvaTransform {
  const where = 'eva';
  if (options === null || typeof options !== 'object') throw new TypeError(`${where}: options must be an object, got ${String(options)}`);
  const { layers, backend, hybrid, ...methodOptions } = options;
  const { block, loop } = splitMethodOptions(where, methodOptions, EVA_BLOCK_KEYS);
  return secondOrder({ layers, backend, ...(hybrid === undefined ? {} : { hybrid }), ...loop, blocks: evaBlock(block, where) }, where, 'kl-clip');
}
