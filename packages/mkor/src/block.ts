import { finiteFlag, hasFusedKernel, hyperparameterAt, runFusedKernel, selectByScalar } from '@mkor/core';
import { roundToHalf } from '@mkor/fp16';
import { REFERENCE_STABILIZER, factorNorm, stabilizeDeferred } from '@mkor/norm-stabilizer';
import type { Absorbed, BlockLayer, BlockStatistics, BlockStep, CurvatureBlock } from '@mkor/second-order';
import { kroneckerPrecondition } from '@mkor/second-order';
import {
  type InverseFactor,
  type InverseUpdateForm,
  type LowRankInverse,
  blendLowRankTowardIdentity,
  isLowRank,
  lowRankIdentity,
  lowRankNormBound,
  updateInverseFactor,
  updateLowRankInverse,
} from '@mkor/sherman-morrison';
import * as tf from '@tensorflow/tfjs-core';

import { type MkorBlockOptions, type ResolvedMkorBlockOptions, resolveMkorBlockOptions } from './options';

/**
 * One layer's MKOR state: the inverse factors (each dense, or in low-rank form, see
 * `LowRankInverse` of `@mkor/sherman-morrison`), and for the reference refresh the authors' reset
 * flags (1: the factor becomes I at the next refresh instead of being updated), kept on the device.
 */
export interface MkorLayerState {
  /** `R⁻¹`, the inverse input factor, of size `d_in(+1)`. */
  readonly inputInverse: InverseFactor;
  /** `L⁻¹`, the inverse output-gradient factor, of size `d_out`. */
  readonly outputInverse: InverseFactor;
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
  return store(updateInverseFactor(inverse, v, { form: update.form, gamma: update.gamma, checkFinite: false }), update.factorPrecision);
}

/** `x` rounded to half precision when the factors are stored so. */
function store<T extends tf.Tensor>(x: T, precision: 'float32' | 'float16'): T {
  return precision === 'float16' ? (roundToHalf(x, 'float16') as T) : x;
}

/** `condition ? a : b` for low-rank factors, part by part, on the device. */
function selectLowRank(condition: tf.Scalar, a: LowRankInverse, b: LowRankInverse): LowRankInverse {
  return {
    scale: selectByScalar(condition, a.scale, b.scale),
    basis: selectByScalar(condition, a.basis, b.basis),
    weights: selectByScalar(condition, a.weights, b.weights),
  };
}

/** One factor's refresh in {@link stabilizedRefresh}: the new factor, and the device-side flags of what happened. */
interface FactorRefresh {
  readonly inverse: InverseFactor;
  readonly fired: tf.Scalar | undefined;
  readonly finite: tf.Scalar;
  readonly dropped: tf.Scalar | undefined;
}

/** The stabiliser's norms, in the order of the fused kernel's `norm` attribute. */
const FUSED_NORMS = ['inf', 'max', 'fro'] as const;

/**
 * {@link refreshDense} as one fused kernel (`FUSED_KERNELS.denseRefresh` of `@mkor/core`): one
 * reading pass over the factor for its norm and `P·w`, one writing pass for the blend and the
 * rank-1 step, instead of about sixteen; equal up to float32 rounding. Undefined where the backend
 * lacks it, for the reference form and for factors stored in half precision.
 */
function fusedRefreshDense(inverse: tf.Tensor2D, v: tf.Tensor1D, update: StabilizedUpdate): FactorRefresh | undefined {
  if (update.form === 'reference' || update.factorPrecision !== 'float32' || !hasFusedKernel('denseRefresh')) return undefined;
  const stabilizer = update.stabilizer;
  const [refreshed, fired, finite] = runFusedKernel<[tf.Tensor2D, tf.Scalar, tf.Scalar]>(
    'denseRefresh',
    { inverse, v },
    {
      stabilize: stabilizer === false ? 0 : 1,
      epsilon: stabilizer === false ? 0 : stabilizer.epsilon,
      zeta: stabilizer === false ? 0 : stabilizer.zeta,
      norm: stabilizer === false ? 0 : FUSED_NORMS.indexOf(stabilizer.norm),
      form: update.form === 'paper' ? 1 : 0,
      gamma: update.gamma,
    },
  );
  if (stabilizer === false) fired.dispose();
  return { inverse: refreshed, fired: stabilizer === false ? undefined : fired, finite, dropped: undefined };
}

function refreshDense(inverse: tf.Tensor2D, v: tf.Tensor1D, update: StabilizedUpdate): FactorRefresh {
  const fused = fusedRefreshDense(inverse, v, update);
  if (fused !== undefined) return fused;
  let start = inverse;
  let fired: tf.Scalar | undefined;
  if (update.stabilizer !== false) ({ inverse: start, fired } = stabilizeDeferred(inverse, { ...update.stabilizer, mode: 'blend' }));
  const updated = updateFactor(start, v, update);
  const finite = finiteFlag([updated]);
  return { inverse: selectByScalar(finite, updated, tf.eye(updated.shape[0]) as tf.Tensor2D), fired, finite, dropped: undefined };
}

function refreshLowRank(inverse: LowRankInverse, v: tf.Tensor1D, update: StabilizedUpdate): FactorRefresh {
  let start = inverse;
  let fired: tf.Scalar | undefined;
  if (update.stabilizer !== false) {
    // The inf-norm bound of the low-rank form, whatever norm is chosen: it is at least the dense
    // factor's inf norm and its largest entry, so the stabiliser fires no later than on dense factors.
    fired = tf.greater(lowRankNormBound(inverse), tf.scalar(update.stabilizer.epsilon)) as tf.Scalar;
    start = selectLowRank(fired, blendLowRankTowardIdentity(inverse, update.stabilizer.zeta), inverse);
  }
  const { inverse: updated, dropped } = updateLowRankInverse(start, v, { form: update.form, gamma: update.gamma, checkFinite: false });
  const stored: LowRankInverse = {
    scale: store(updated.scale, update.factorPrecision),
    basis: store(updated.basis, update.factorPrecision),
    weights: store(updated.weights, update.factorPrecision),
  };
  const finite = finiteFlag([stored.scale, stored.basis, stored.weights]);
  const identity = lowRankIdentity(stored.basis.shape[0] as number, stored.basis.shape[1] as number);
  return { inverse: selectLowRank(finite, stored, identity), fired, finite, dropped };
}

/** What {@link stabilizedRefresh} needs besides the state: the update and the stabiliser. */
interface StabilizedUpdate extends FactorUpdate {
  readonly stabilizer: ResolvedMkorBlockOptions['stabilizer'];
}

/**
 * The paper's refresh of one layer (Algorithm 1, lines 4–8): each inverse factor through the
 * norm-based stabiliser (eq. 7/8, `blend` mode; skipped with `stabilizer: false`), then the
 * Sherman–Morrison update (eq. 5/6) with its vector — `a` (bias folded in) for `R⁻¹`, `g` (scaled)
 * for `L⁻¹`. A factor that comes out non-finite is reset to I. Dense and low-rank factors alike
 * (a low-rank factor's stabiliser tests its inf-norm bound, `lowRankNormBound`). Nothing is read
 * back: the decisions stay on the device (`selectByScalar`), and the events `stabilized` (either
 * factor's stabiliser fired), `reset` (either factor was reset) and `truncated` (a low-rank factor's
 * window was full and its least term was dropped) are bool scalars.
 */
export function stabilizedRefresh(state: MkorLayerState, statistics: BlockStatistics, update: StabilizedUpdate): Absorbed<MkorLayerState> {
  const refresh = (inverse: InverseFactor, v: tf.Tensor1D): FactorRefresh =>
    isLowRank(inverse) ? refreshLowRank(inverse, v, update) : refreshDense(inverse, v, update);
  const input = refresh(state.inputInverse, statistics.a);
  const output = refresh(state.outputInverse, statistics.g);
  const either = (a: tf.Scalar | undefined, b: tf.Scalar | undefined): tf.Scalar | boolean =>
    a === undefined ? (b ?? false) : b === undefined ? a : (tf.logicalOr(a, b) as tf.Scalar);
  const truncated = (dropped: tf.Scalar | undefined): tf.Scalar | undefined =>
    dropped === undefined ? undefined : (tf.greater(dropped, 0) as tf.Scalar);
  return {
    state: { inputInverse: input.inverse, outputInverse: output.inverse },
    consumed: true,
    events: {
      stabilized: either(input.fired, output.fired),
      reset: tf.logicalNot(tf.logicalAnd(input.finite, output.finite)) as tf.Scalar,
      truncated: either(truncated(input.dropped), truncated(output.dropped)),
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
  const inputInverse = denseFactor('referenceRefresh', state.inputInverse);
  const outputInverse = denseFactor('referenceRefresh', state.outputInverse);
  const exceeds = (inverse: tf.Tensor2D): tf.Scalar =>
    tf.logicalNot(tf.lessEqual(factorNorm(inverse, REFERENCE_STABILIZER.norm), tf.scalar(REFERENCE_STABILIZER.epsilon))) as tf.Scalar;
  const resetInput = tf.greater(state.resetInput as tf.Scalar, 0) as tf.Scalar;
  const input = selectByScalar(resetInput, tf.eye(inputInverse.shape[0]) as tf.Tensor2D, updateFactor(inputInverse, statistics.a, update));
  const inputExceeds = exceeds(input);
  const resetOutput = tf.logicalOr(tf.greater(state.resetOutput as tf.Scalar, 0), inputExceeds) as tf.Scalar;
  const output = selectByScalar(resetOutput, tf.eye(outputInverse.shape[0]) as tf.Tensor2D, updateFactor(outputInverse, statistics.g, update));
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

/** A dense factor, or a `TypeError` naming `where` for a low-rank one. */
function denseFactor(where: string, factor: InverseFactor): tf.Tensor2D {
  if (isLowRank(factor)) throw new TypeError(`${where}: needs dense factors (its reset rule reads the largest entry), got a low-rank one`);
  return factor;
}

/**
 * The representation of a factor of size `d` (see `MkorBlockOptions.factors`): low-rank for
 * `'low-rank'`, and for `'auto'` when `d > 4·rank` — preconditioning costs about `d²·n` dense
 * against `2·rank·d·n` low-rank (plus a few passes over `[d, rank]`), and a refresh `~9·d²`
 * against `~6·d·rank`, so low-rank pays from a few times the window on.
 */
export function lowRankFactorFor(factors: 'dense' | 'low-rank' | 'auto', d: number, rank: number): boolean {
  return factors === 'low-rank' || (factors === 'auto' && d > 4 * rank);
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
 * `R⁻¹ [∇K; ∇b] L⁻¹`). Each factor is dense or low-rank (`factors`, `rank`;
 * {@link lowRankFactorFor}). The step-6 rescale and the backend are the layer loop's and the
 * composition's (`@mkor/second-order`). γ and the interval may be schedules of the step.
 *
 * @throws RangeError naming `where` for a bad or unknown option.
 */
export function mkorBlock(options: MkorBlockOptions = {}, where = 'mkorBlock'): CurvatureBlock<MkorLayerState> {
  const resolved = resolveMkorBlockOptions(options, where);
  const reference = resolved.refresh === 'reference';
  const identityFactor = (d: number): InverseFactor =>
    lowRankFactorFor(resolved.factors, d, resolved.rank) ? lowRankIdentity(d, resolved.rank) : (tf.eye(d) as tf.Tensor2D);
  return {
    kind: 'mkor',
    needsCovariance: false,
    events: reference ? ['inputReset', 'outputReset'] : ['stabilized', 'reset', 'truncated'],
    init: (layer: BlockLayer) => ({
      inputInverse: identityFactor(layer.foldedInputDim),
      outputInverse: identityFactor(layer.outputDim),
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
