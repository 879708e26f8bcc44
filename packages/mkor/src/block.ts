import { finiteFlag, hyperparameterAt, selectByScalar } from '@mkor/core';
import { roundToHalf } from '@mkor/fp16';
import { REFERENCE_STABILIZER, factorNorm, stabilizeDeferred } from '@mkor/norm-stabilizer';
import type { Absorbed, BlockLayer, BlockStatistics, BlockStep, CurvatureBlock } from '@mkor/second-order';
import { kroneckerPrecondition } from '@mkor/second-order';
import { type InverseUpdateForm, updateInverseFactor } from '@mkor/sherman-morrison';
import * as tf from '@tensorflow/tfjs-core';

import { type MkorBlockOptions, type ResolvedMkorBlockOptions, resolveMkorBlockOptions } from './options';

/**
 * One layer's MKOR state: the inverse factors, and for the reference refresh the authors' reset
 * flags (1: the factor becomes I at the next refresh instead of being updated), kept on the device.
 */
export interface MkorLayerState {
  /** `R⁻¹`, the inverse input factor, `[d_in(+1), d_in(+1)]`. */
  readonly inputInverse: tf.Tensor2D;
  /** `L⁻¹`, the inverse output-gradient factor, `[d_out, d_out]`. */
  readonly outputInverse: tf.Tensor2D;
  /** Reference refresh: 1 when `R⁻¹` is reset to I at the next refresh (1 before the first), a float32 scalar. */
  readonly resetInput?: tf.Scalar;
  /** Reference refresh: 1 when `L⁻¹` is reset to I at the next refresh (1 before the first), a float32 scalar. */
  readonly resetOutput?: tf.Scalar;
}

/** How one inverse factor is refreshed with one vector: the update form, γ, and the storage precision. */
interface FactorUpdate {
  readonly form: InverseUpdateForm;
  readonly gamma: number;
  readonly factorPrecision: 'float32' | 'float16';
}

function updateFactor(inverse: tf.Tensor2D, v: tf.Tensor1D, update: FactorUpdate): tf.Tensor2D {
  const updated = updateInverseFactor(inverse, v, { form: update.form, gamma: update.gamma, checkFinite: false });
  return update.factorPrecision === 'float16' ? (roundToHalf(updated, 'float16') as tf.Tensor2D) : updated;
}

/**
 * The paper's refresh of one layer (Algorithm 1, lines 4–8): each inverse factor through the
 * norm-based stabiliser (eq. 7/8, `blend` mode; skipped with `stabilizer: false`), then the
 * Sherman–Morrison update (eq. 5/6) with its vector — `a` (bias folded in) for `R⁻¹`, `g` (scaled)
 * for `L⁻¹`. A factor that comes out non-finite is reset to I. Nothing is read back: the decisions
 * stay on the device (`selectByScalar`), and the events `stabilized` (either factor's stabiliser
 * fired) and `reset` (either factor was reset) are bool scalars.
 */
export function stabilizedRefresh(
  state: MkorLayerState,
  statistics: BlockStatistics,
  update: FactorUpdate & { readonly stabilizer: ResolvedMkorBlockOptions['stabilizer'] },
): Absorbed<MkorLayerState> {
  const refresh = (inverse: tf.Tensor2D, v: tf.Tensor1D): { inverse: tf.Tensor2D; fired: tf.Scalar | undefined; finite: tf.Scalar } => {
    let start = inverse;
    let fired: tf.Scalar | undefined;
    if (update.stabilizer !== false) ({ inverse: start, fired } = stabilizeDeferred(inverse, { ...update.stabilizer, mode: 'blend' }));
    const updated = updateFactor(start, v, update);
    const finite = finiteFlag([updated]);
    return { inverse: selectByScalar(finite, updated, tf.eye(updated.shape[0]) as tf.Tensor2D), fired, finite };
  };
  const input = refresh(state.inputInverse, statistics.a);
  const output = refresh(state.outputInverse, statistics.g);
  return {
    state: { inputInverse: input.inverse, outputInverse: output.inverse },
    consumed: true,
    events: {
      stabilized: input.fired === undefined || output.fired === undefined ? false : (tf.logicalOr(input.fired, output.fired) as tf.Scalar),
      reset: tf.logicalNot(tf.logicalAnd(input.finite, output.finite)) as tf.Scalar,
    },
  };
}

/**
 * The authors' refresh of one layer (the reference preset), step by step as their code: a factor
 * flagged for reset becomes I instead of being updated; the input factor is refreshed first, then
 * the output factor; after each, a factor with an entry above the stabiliser's
 * `REFERENCE_STABILIZER` threshold (max-entry norm above ε = 2, NaN included) flags both factors
 * of the layer — so an input factor over it resets the output factor at once and itself at the
 * next refresh. The flags stay on the device; the events `inputReset` and `outputReset` say which
 * factors were reset to I on this refresh.
 */
export function referenceRefresh(state: MkorLayerState, statistics: BlockStatistics, update: FactorUpdate): Absorbed<MkorLayerState> {
  const exceeds = (inverse: tf.Tensor2D): tf.Scalar =>
    tf.logicalNot(tf.lessEqual(factorNorm(inverse, REFERENCE_STABILIZER.norm), tf.scalar(REFERENCE_STABILIZER.epsilon))) as tf.Scalar;
  const resetInput = tf.greater(state.resetInput as tf.Scalar, 0) as tf.Scalar;
  const input = selectByScalar(resetInput, tf.eye(state.inputInverse.shape[0]) as tf.Tensor2D, updateFactor(state.inputInverse, statistics.a, update));
  const inputExceeds = exceeds(input);
  const resetOutput = tf.logicalOr(tf.greater(state.resetOutput as tf.Scalar, 0), inputExceeds) as tf.Scalar;
  const output = selectByScalar(resetOutput, tf.eye(state.outputInverse.shape[0]) as tf.Tensor2D, updateFactor(state.outputInverse, statistics.g, update));
  const outputExceeds = exceeds(output);
  return {
    state: {
      inputInverse: input,
      outputInverse: output,
      resetInput: tf.cast(tf.logicalOr(inputExceeds, outputExceeds), 'float32') as tf.Scalar,
      resetOutput: tf.cast(outputExceeds, 'float32') as tf.Scalar,
    },
    consumed: true,
    events: { inputReset: resetInput, outputReset: resetOutput },
  };
}

/** Whether MKOR refreshes its factors on `step`: every `factorUpdateInterval` steps, and every step while `step < warmupSteps`. */
function refreshesOn(where: string, options: ResolvedMkorBlockOptions, step: number): boolean {
  const interval = hyperparameterAt(where, 'factorUpdateInterval', options.factorUpdateInterval, step, { min: 1, integer: true });
  return step % interval === 0 || step < options.warmupSteps;
}

/**
 * MKOR as a curvature block (Algorithm 1, steps 3–6, for one layer): inverse factors `R⁻¹`
 * (input side, bias folded in) and `L⁻¹` (output side), both I at first, refreshed every
 * `factorUpdateInterval` steps from the rank-1 statistics in O(d²) — the paper's refresh
 * ({@link stabilizedRefresh}, forms `'exact'` or `'paper'`) or the authors' (the reference preset,
 * {@link referenceRefresh}) — and the preconditioned gradient `ΔW = L⁻¹ ∇W R⁻¹` (kernel layout
 * `R⁻¹ [∇K; ∇b] L⁻¹`). The step-6 rescale and the backend are the layer loop's and the
 * composition's (`@mkor/second-order`). γ and the interval may be schedules of the step.
 *
 * @throws RangeError naming `where` for a bad or unknown option.
 */
export function mkorBlock(options: MkorBlockOptions = {}, where = 'mkorBlock'): CurvatureBlock<MkorLayerState> {
  const resolved = resolveMkorBlockOptions(options, where);
  const reference = resolved.refresh === 'reference';
  return {
    kind: 'mkor',
    needsCovariance: false,
    events: reference ? ['inputReset', 'outputReset'] : ['stabilized', 'reset'],
    init: (layer: BlockLayer) => ({
      inputInverse: tf.eye(layer.foldedInputDim),
      outputInverse: tf.eye(layer.outputDim),
      ...(reference ? { resetInput: tf.scalar(1), resetOutput: tf.scalar(1) } : {}),
    }),
    absorb: (state, statistics, { step }: BlockStep) => {
      if (statistics === undefined || !refreshesOn(where, resolved, step)) return { state, consumed: false };
      const update: FactorUpdate = {
        form: resolved.form,
        gamma: hyperparameterAt(where, 'gamma', resolved.gamma, step, { min: 0, max: 1, minExclusive: true, maxExclusive: true }),
        factorPrecision: resolved.factorPrecision,
      };
      return reference ? referenceRefresh(state, statistics, update) : stabilizedRefresh(state, statistics, { ...update, stabilizer: resolved.stabilizer });
    },
    precondition: (state, gradient) => kroneckerPrecondition(state.inputInverse, gradient, state.outputInverse),
  };
}
