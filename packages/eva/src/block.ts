import { type Hyperparameter, checkHyperparameter, checkKnownOptions, hyperparameterAt } from '@mkor/core';
import { type BlockLayer, type CurvatureBlock, RENAMED_OPTIONS } from '@mkor/second-order';
import * as tf from '@tensorflow/tfjs-core';

/** Hyperparameters of the Eva block; every field has a default, and each may be a schedule of the step. */
export interface EvaBlockOptions {
  /** Momentum γ ∈ (0, 1) of the vectors: `ā ← γā + (1−γ)a`, `ḡ ← γḡ + (1−γ)g`. Default 0.95. */
  readonly gamma?: Hyperparameter;
  /** Damping λ > 0 of `(āāᵀ ⊗ ḡḡᵀ + λI)⁻¹`. Default 0.03. */
  readonly damping?: Hyperparameter;
}

/** {@link EvaBlockOptions} checked, with defaults. */
export interface ResolvedEvaBlockOptions {
  readonly gamma: Hyperparameter;
  readonly damping: Hyperparameter;
}

/** The keys of {@link EvaBlockOptions}. */
export const EVA_BLOCK_KEYS: readonly (keyof EvaBlockOptions)[] = ['gamma', 'damping'];

const GAMMA_BOUNDS = { min: 0, max: 1, minExclusive: true, maxExclusive: true };
const DAMPING_BOUNDS = { min: 0, minExclusive: true };

/** Checks the Eva block's options (unknown ones refused) and fills in the defaults; errors name `where`. */
export function resolveEvaBlockOptions(options: EvaBlockOptions = {}, where = 'evaBlock'): ResolvedEvaBlockOptions {
  if (options === null || typeof options !== 'object') throw new TypeError(`${where}: options must be an object, got ${String(options)}`);
  checkKnownOptions(where, options, EVA_BLOCK_KEYS, RENAMED_OPTIONS);
  return {
    gamma: checkHyperparameter(where, 'gamma', options.gamma ?? 0.95, GAMMA_BOUNDS),
    damping: checkHyperparameter(where, 'damping', options.damping ?? 0.03, DAMPING_BOUNDS),
  };
}

/** One layer's Eva state: two vectors, no matrices. */
export interface EvaLayerState {
  /** `ā`, the moving average of `[a, 1]` (bias folded in) or `a`, length `d_in(+1)` (zeros before the first statistics). */
  readonly inputVector: tf.Tensor1D;
  /** `ḡ`, the moving average of g, length `d_out` (zeros before the first statistics). */
  readonly outputVector: tf.Tensor1D;
  /** Whether the vectors hold statistics yet (the first replace the zeros). */
  readonly hasVectors: boolean;
}

/**
 * Eva's closed-form preconditioned gradient of one layer in tfjs's kernel layout (`M = [∇K; ∇b]`,
 * `[d_in(+1), d_out]`, `a` of length `d_in(+1)`, `g` of length `d_out`):
 *
 *     ΔK = (1/λ) (M − (aᵀ M g) / (‖a‖²‖g‖² + λ) · a gᵀ)
 *
 * which is `(a aᵀ ⊗ g gᵀ + λI)⁻¹ vec(M)` by Sherman–Morrison (`aaᵀ ⊗ ggᵀ = vvᵀ` with
 * `v = a ⊗ g`, `‖v‖² = ‖a‖²‖g‖²`, `vᵀvec(M) = aᵀMg`). O(d_in·d_out), no matrix is stored.
 */
export function evaPrecondition(gradient: tf.Tensor2D, a: tf.Tensor1D, g: tf.Tensor1D, damping: number): tf.Tensor2D {
  return tf.tidy(() => {
    const column = tf.reshape(a, [-1, 1]) as tf.Tensor2D;
    const row = tf.reshape(g, [1, -1]) as tf.Tensor2D;
    const projection = tf.sum(tf.mul(tf.matMul(gradient, tf.reshape(g, [-1, 1])), column));
    const denominator = tf.add(tf.mul(tf.sum(tf.square(a)), tf.sum(tf.square(g))), tf.scalar(damping));
    // The outer product a gᵀ by broadcasting ([d_in, 1] · [1, d_out]).
    const correction = tf.mul(tf.div(projection, denominator), tf.mul(column, row));
    return tf.div(tf.sub(gradient, correction), tf.scalar(damping)) as tf.Tensor2D;
  });
}

/**
 * Eva (Zhang et al., ICLR 2023) as a curvature block: moving averages of the rank-1 vectors only
 * (`2d` numbers per layer, no factors),
 *
 *     ā ← γā + (1−γ)[a, 1],     ḡ ← γḡ + (1−γ)g        (the first statistics replace the zeros)
 *
 * and the closed form of `(āāᵀ ⊗ ḡḡᵀ + λI)⁻¹ vec(∇W)` ({@link evaPrecondition}); before a layer's
 * first statistics its update is `∇W/λ`. No events, no read-backs.
 */
export function evaBlock(options: EvaBlockOptions = {}, where = 'evaBlock'): CurvatureBlock<EvaLayerState> {
  const resolved = resolveEvaBlockOptions(options, where);
  return {
    kind: 'eva',
    needsCovariance: false,
    events: [],
    init: (layer: BlockLayer) => ({ inputVector: tf.zeros([layer.foldedInputDim]), outputVector: tf.zeros([layer.outputDim]), hasVectors: false }),
    absorb: (state, statistics, { step }) => {
      if (statistics === undefined) return { state, consumed: false };
      const gamma = hyperparameterAt(where, 'gamma', resolved.gamma, step, GAMMA_BOUNDS);
      // The statistics belong to the step: the first vectors are copies of our own.
      const blend = (average: tf.Tensor1D, fresh: tf.Tensor1D): tf.Tensor1D =>
        state.hasVectors ? tf.add<tf.Tensor1D>(tf.mul(average, tf.scalar(gamma)), tf.mul(fresh, tf.scalar(1 - gamma))) : tf.clone(fresh);
      return {
        state: { inputVector: blend(state.inputVector, statistics.a), outputVector: blend(state.outputVector, statistics.g), hasVectors: true },
        consumed: true,
      };
    },
    precondition: (state, gradient, { step }) =>
      evaPrecondition(gradient, state.inputVector, state.outputVector, hyperparameterAt(where, 'damping', resolved.damping, step, DAMPING_BOUNDS)),
  };
}
