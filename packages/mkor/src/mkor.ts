import type { Transform } from '@mkor/core';
import {
  type BlockPreconditionerState,
  type CompositionOptions,
  type LayerSource,
  type SecondOrderTransform,
  blockPreconditioner,
  secondOrder,
} from '@mkor/second-order';

import { mkorBlock } from './block';
import { type MkorOptions, splitMkorOptions } from './options';

/**
 * The MKOR preconditioner (Algorithm 1, steps 3–6) as a transform: {@link mkorBlock} for every
 * second-order layer in `@mkor/second-order`'s layer loop, which folds the bias into `a`, scales
 * `g` (`gradientScale`), preconditions each layer's `[∇K; ∇b]` and rescales it to the gradient's
 * norm (step 6; `scaling`). Other variables pass through. Chain a first-order transform after it
 * (step 7); {@link mkor} does.
 *
 * @param layers - the second-order layers (`capture.secondOrder`), or a function returning them,
 *   called once at the first `init`.
 */
export function mkorPreconditioner(layers: LayerSource, options: MkorOptions = {}): Transform<BlockPreconditionerState> {
  const where = 'mkorPreconditioner';
  const { block, loop } = splitMkorOptions(options, where);
  return blockPreconditioner(layers, { ...loop, blocks: mkorBlock(block, where) }, where);
}

/** Options of {@link mkor}: MKOR's, plus its layers, the backend and MKOR-H (`hybrid`). */
export interface MkorTransformOptions extends MkorOptions, CompositionOptions {
  /** The second-order layers (`prepareModel(model).secondOrder` from `@mkor/capture`), or a function returning them. */
  readonly layers: LayerSource;
}

/** The composed MKOR transform (see `SecondOrderTransform` of `@mkor/second-order`). */
export type MkorTransform = SecondOrderTransform;

/**
 * MKOR as one transform: `skipNonFinite(chain(mkorPreconditioner(layers, options), backend))`, or
 * with `hybrid` (MKOR-H) the preconditioner behind `hybridSwitch`. A step whose gradients hold NaN
 * or Inf, or whose result would write NaN or Inf into the weights or the state, is refused whole
 * (factors, moments and weights are left as they were) and counted. Statistics come in the step's
 * context (`extrasWithStatistics` of `@mkor/capture`); MKOR-H reads the loss from `context.loss`.
 */
export function mkor(options: MkorTransformOptions): MkorTransform {
  const where = 'mkor';
  if (options === null || typeof options !== 'object') throw new TypeError(`${where}: options must be an object, got ${String(options)}`);
  const { layers, backend, hybrid, ...methodOptions } = options;
  const { block, loop } = splitMkorOptions(methodOptions, where);
  return secondOrder({ layers, backend, ...(hybrid === undefined ? {} : { hybrid }), ...loop, blocks: mkorBlock(block, where) }, where);
}
