import { type Method, type MethodTransformOptions, type SecondOrderTransform, defineMethod } from '@mkor/second-order';

import { mkorBlock } from './block';
import { MKOR_BLOCK_KEYS, type MkorBlockOptions, mkorLoopDefaults, resolveMkorBlockOptions } from './options';

/** The authors' per-row clamp of the captured rows (`clipping_value`), used by the reference preset. */
const REFERENCE_ROW_CLAMP = 100;

/** Options of {@link mkor}: MKOR's, plus its layers, the backend and MKOR-H (`hybrid`). */
export type MkorTransformOptions = MethodTransformOptions<MkorBlockOptions>;

/** The composed MKOR transform (see `SecondOrderTransform` of `@mkor/second-order`). */
export type MkorTransform = SecondOrderTransform;

/**
 * MKOR as a method of `@mkor/second-order`: {@link mkorBlock} in the layer loop, rescaled to the
 * gradient's norm (step 6; the reference preset: by summed norms, and its rows clamped to ±100 as
 * the authors' capture does).
 */
export const MKOR: Method<MkorBlockOptions> = defineMethod<MkorBlockOptions>({
  name: 'mkor',
  blockKeys: MKOR_BLOCK_KEYS,
  block: mkorBlock,
  defaultScaling: 'frobenius',
  loopDefaults: (options, where) => mkorLoopDefaults(resolveMkorBlockOptions(options, where).preset),
  rowClamp: (options) => (options.preset === 'reference' ? REFERENCE_ROW_CLAMP : undefined),
  config: (options, where) => {
    const resolved = resolveMkorBlockOptions(options, where);
    return {
      preset: resolved.preset,
      form: resolved.form,
      gamma: resolved.gamma as number,
      stabilizer: resolved.stabilizer === false ? false : { ...resolved.stabilizer },
      factorUpdateInterval: resolved.factorUpdateInterval as number,
      warmupSteps: resolved.warmupSteps,
      factorPrecision: resolved.factorPrecision,
      factors: resolved.factors,
      rank: resolved.rank,
    };
  },
});

/**
 * The MKOR preconditioner (Algorithm 1, steps 3–6) as a transform: {@link mkorBlock} for every
 * second-order layer in `@mkor/second-order`'s layer loop, which folds the bias into `a`, scales
 * `g` (`gradientScale`), preconditions each layer's `[∇K; ∇b]` and rescales it to the gradient's
 * norm (step 6; `scaling`). Other variables pass through. Chain a first-order transform after it
 * (step 7); {@link mkor} does.
 */
export const mkorPreconditioner = MKOR.preconditioner;

/**
 * MKOR as one transform: `skipNonFinite(chain(mkorPreconditioner(layers, options), backend))`, or
 * with `hybrid` (MKOR-H) the preconditioner behind `hybridSwitch`. A step whose gradients hold NaN
 * or Inf, or whose result would write NaN or Inf into the weights or the state, is refused whole
 * (factors, moments and weights are left as they were) and counted. Statistics come in the step's
 * context (`extrasWithStatistics` of `@mkor/capture`); MKOR-H reads the loss from `context.loss`.
 */
export const mkor: (options: MkorTransformOptions) => MkorTransform = MKOR.transform;
