import { type Hyperparameter, checkHyperparameter, checkKnownOptions, finiteFlag, hyperparameterAt } from '@mkor/core';
import { dampedInverse } from '@mkor/linalg';
import { type Absorbed, type BlockLayer, type CurvatureBlock, RENAMED_OPTIONS, kroneckerPrecondition } from '@mkor/second-order';
import * as tf from '@tensorflow/tfjs-core';

/** Hyperparameters of the KFAC block; every field has a default (KAISA's), and each may be a schedule of the step. */
export interface KfacBlockOptions {
  /** Factor momentum γ ∈ (0, 1): `A ← γA + (1−γ)E[ããᵀ]`, `G ← γG + (1−γ)E[ggᵀ]`. Default 0.95. */
  readonly gamma?: Hyperparameter;
  /** Damping λ ≥ 0 added to each factor before inverting: `(A + λI)⁻¹`, `(G + λI)⁻¹`. Default 0.001. */
  readonly damping?: Hyperparameter;
  /** Fold new covariances into the factors every this many steps. Default 1. */
  readonly factorUpdateInterval?: Hyperparameter;
  /** Recompute the damped inverses every this many steps (stale in between). Default 10. */
  readonly inverseInterval?: Hyperparameter;
}

/** {@link KfacBlockOptions} checked, with defaults. */
export interface ResolvedKfacBlockOptions {
  readonly gamma: Hyperparameter;
  readonly damping: Hyperparameter;
  readonly factorUpdateInterval: Hyperparameter;
  readonly inverseInterval: Hyperparameter;
}

/** The keys of {@link KfacBlockOptions}. */
export const KFAC_BLOCK_KEYS: readonly (keyof KfacBlockOptions)[] = ['gamma', 'damping', 'factorUpdateInterval', 'inverseInterval'];

const GAMMA_BOUNDS = { min: 0, max: 1, minExclusive: true, maxExclusive: true };
const INTERVAL_BOUNDS = { min: 1, integer: true };

/** Checks the KFAC block's options (unknown ones refused) and fills in the defaults; errors name `where`. */
export function resolveKfacBlockOptions(options: KfacBlockOptions = {}, where = 'kfacBlock'): ResolvedKfacBlockOptions {
  if (options === null || typeof options !== 'object') throw new TypeError(`${where}: options must be an object, got ${String(options)}`);
  checkKnownOptions(where, options, KFAC_BLOCK_KEYS, RENAMED_OPTIONS);
  return {
    gamma: checkHyperparameter(where, 'gamma', options.gamma ?? 0.95, GAMMA_BOUNDS),
    damping: checkHyperparameter(where, 'damping', options.damping ?? 0.001, { min: 0 }),
    factorUpdateInterval: checkHyperparameter(where, 'factorUpdateInterval', options.factorUpdateInterval ?? 1, INTERVAL_BOUNDS),
    inverseInterval: checkHyperparameter(where, 'inverseInterval', options.inverseInterval ?? 10, INTERVAL_BOUNDS),
  };
}

/** One layer's KFAC state. */
export interface KfacLayerState {
  /** `A`, the EMA of the input covariance with the bias folded in, `[d_in(+1), d_in(+1)]` (I until the first covariances). */
  readonly inputFactor: tf.Tensor2D;
  /** `G`, the EMA of the output-gradient covariance, `[d_out, d_out]` (I until the first covariances). */
  readonly outputFactor: tf.Tensor2D;
  /** `(A + λI)⁻¹` as of the latest successful inversion (I before the first). */
  readonly inputInverse: tf.Tensor2D;
  /** `(G + λI)⁻¹` as of the latest successful inversion (I before the first). */
  readonly outputInverse: tf.Tensor2D;
  /** Whether the factors hold covariances yet (the first replace the placeholders). */
  readonly hasFactors: boolean;
}

/** `(F + λI)⁻¹`, or `previous` when `F + λI` is not positive definite in float32. */
function invertOrKeep(factor: tf.Tensor2D, previous: tf.Tensor2D, damping: number): { inverse: tf.Tensor2D; failed: boolean } {
  try {
    return { inverse: dampedInverse(factor, damping), failed: false };
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    return { inverse: previous, failed: true };
  }
}

/**
 * KFAC as a curvature block (spec eq. 2–4, KAISA's defaults): Kronecker factors kept as moving
 * averages of the captured covariances,
 *
 *     A ← γA + (1−γ) E[ããᵀ]      (ã = [x, 1]: the input rows with the bias folded in)
 *     G ← γG + (1−γ) E[ggᵀ]      (g = ∂Loss/∂y, times the count with gradientScale 'sum')
 *
 * every `factorUpdateInterval` steps (the first covariances replace the placeholders), the damped
 * inverses `(A + λI)⁻¹`, `(G + λI)⁻¹` recomputed with `@mkor/linalg`'s `dampedInverse` every
 * `inverseInterval` steps and when a layer's first factors arrive (stale in between: λ on each
 * factor, as KAISA), and the preconditioned gradient `ΔW = (G + λI)⁻¹ ∇W (A + λI)⁻¹` — kernel
 * layout `(A + λI)⁻¹ [∇K; ∇b] (G + λI)⁻¹`.
 *
 * New factors that are not finite are not folded in (event `rejected`; one read-back of a flag per
 * layer and factor update); an inversion that fails (`F + λI` not positive definite in float32)
 * keeps the previous inverse (event `inversionFailed`); `inverted` marks the layers whose inverses
 * were recomputed. The statistics must carry covariances (`needsCovariance`).
 */
export function kfacBlock(options: KfacBlockOptions = {}, where = 'kfacBlock'): CurvatureBlock<KfacLayerState> {
  const resolved = resolveKfacBlockOptions(options, where);
  return {
    kind: 'kfac',
    needsCovariance: true,
    events: ['rejected', 'inverted', 'inversionFailed'],
    init: (layer: BlockLayer) => ({
      inputFactor: tf.eye(layer.foldedInputDim),
      outputFactor: tf.eye(layer.outputDim),
      inputInverse: tf.eye(layer.foldedInputDim),
      outputInverse: tf.eye(layer.outputDim),
      hasFactors: false,
    }),
    absorb: (state, statistics, { step }): Absorbed<KfacLayerState> => {
      const factorStep = step % hyperparameterAt(where, 'factorUpdateInterval', resolved.factorUpdateInterval, step, INTERVAL_BOUNDS) === 0;
      const inverseStep = step % hyperparameterAt(where, 'inverseInterval', resolved.inverseInterval, step, INTERVAL_BOUNDS) === 0;
      let next = state;
      let consumed = false;
      let rejected = false;
      if (factorStep && statistics?.covariance !== undefined) {
        const gamma = hyperparameterAt(where, 'gamma', resolved.gamma, step, GAMMA_BOUNDS);
        // The statistics belong to the step: the first factors are copies of our own.
        const blend = (factor: tf.Tensor2D, fresh: tf.Tensor2D): tf.Tensor2D =>
          state.hasFactors ? tf.add<tf.Tensor2D>(tf.mul(factor, tf.scalar(gamma)), tf.mul(fresh, tf.scalar(1 - gamma))) : tf.clone(fresh);
        const inputFactor = blend(state.inputFactor, statistics.covariance.a);
        const outputFactor = blend(state.outputFactor, statistics.covariance.g);
        if (finiteFlag([inputFactor, outputFactor]).dataSync()[0]) {
          next = { ...state, inputFactor, outputFactor, hasFactors: true };
          consumed = true;
        } else {
          rejected = true;
        }
      }
      const firstFactors = consumed && !state.hasFactors;
      if (!next.hasFactors || !(inverseStep || firstFactors)) return { state: next, consumed, events: { rejected } };
      const damping = hyperparameterAt(where, 'damping', resolved.damping, step, { min: 0 });
      const input = invertOrKeep(next.inputFactor, next.inputInverse, damping);
      const output = invertOrKeep(next.outputFactor, next.outputInverse, damping);
      return {
        state: { ...next, inputInverse: input.inverse, outputInverse: output.inverse },
        consumed,
        events: { rejected, inverted: true, inversionFailed: input.failed || output.failed },
      };
    },
    precondition: (state, gradient) => kroneckerPrecondition(state.inputInverse, gradient, state.outputInverse),
  };
}
