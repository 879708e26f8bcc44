import { finiteFlag, hasFusedKernel, runFusedKernel, selectByScalar } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';

/** A layer's weight and optional bias: gradients `∇W, ∇b`, or preconditioned updates `ΔW, Δb`. */
export interface WeightAndBias {
  weight: tf.Tensor;
  bias?: tf.Tensor;
}

function checkTensor(where: string, name: string, t: unknown): tf.Tensor {
  if (!(t instanceof tf.Tensor)) {
    throw new TypeError(`${where}: ${name} must be a tf.Tensor, got ${t === null ? 'null' : typeof t}`);
  }
  if (t.isDisposed) throw new TypeError(`${where}: ${name} has been disposed`);
  if (t.dtype !== 'float32') throw new TypeError(`${where}: ${name} must have dtype float32, got ${t.dtype}`);
  if (t.size === 0) throw new RangeError(`${where}: ${name} must not be empty, got shape [${t.shape.join(', ')}]`);
  return t;
}

function checkSameShape(where: string, names: [string, string], a: unknown, b: unknown): void {
  const first = checkTensor(where, names[0], a);
  const second = checkTensor(where, names[1], b);
  if (!tf.util.arraysEqual(first.shape, second.shape)) {
    throw new RangeError(
      `${where}: ${names[0]} and ${names[1]} must have the same shape, got [${first.shape.join(', ')}] and [${second.shape.join(', ')}]`,
    );
  }
}

function checkPair(where: string, update: WeightAndBias, gradient: WeightAndBias): void {
  if (update === null || typeof update !== 'object' || gradient === null || typeof gradient !== 'object') {
    throw new TypeError(`${where}: update and gradient must be objects { weight, bias? }`);
  }
  checkSameShape(where, ['update.weight', 'gradient.weight'], update.weight, gradient.weight);
  if ((update.bias === undefined) !== (gradient.bias === undefined)) {
    throw new RangeError(
      `${where}: update and gradient must both have a bias or both have none, got ` +
        `${update.bias === undefined ? 'none' : 'one'} and ${gradient.bias === undefined ? 'none' : 'one'}`,
    );
  }
  if (update.bias !== undefined) checkSameShape(where, ['update.bias', 'gradient.bias'], update.bias, gradient.bias);
}

/**
 * `‖x‖_F = √(Σ xᵢ²)` over every entry (the Euclidean norm of a vector) without overflow or
 * underflow: computed as `m · √(Σ (xᵢ/m)²)` with `m = max |xᵢ|`, so entries above ~1e19 (whose
 * squares overflow float32) or below ~1e-19 (whose squares underflow) give the right norm. NaN if
 * any entry is NaN or ±Inf; 0 for an all-zero tensor. Returns a new scalar; `x` is not disposed.
 * Where the backend has the fused kernel (`FUSED_KERNELS.euclideanNorms` of `@mkor/core`) it is
 * one pass, the sum of squares taken in float64 and rounded once.
 */
export function frobeniusNorm(x: tf.Tensor): tf.Scalar {
  checkTensor('frobeniusNorm', 'x', x);
  return tf.tidy(() => {
    if (hasFusedKernel('euclideanNorms')) return tf.reshape(runFusedKernel<tf.Tensor>('euclideanNorms', { x0: x }), []) as tf.Scalar;
    const largest = tf.max(tf.abs(x));
    const divisor = tf.where(tf.greater(largest, 0), largest, tf.onesLike(largest));
    return tf.mul(largest, tf.sqrt(tf.sum(tf.square(tf.div(x, divisor))))) as tf.Scalar;
  });
}

/**
 * `ν·Δ` when `ν` is finite and positive; otherwise the raw gradient when every entry of it is
 * finite; otherwise zeros. Chosen on the backend with `selectByScalar`: no read-back.
 */
function rescaleOrFallBack(update: tf.Tensor, gradient: tf.Tensor, factor: tf.Tensor, gradientFinite: tf.Tensor): tf.Tensor {
  const usable = tf.logicalAnd(tf.isFinite(factor), tf.greater(factor, 0));
  const fallback = selectByScalar(gradientFinite, gradient, tf.zerosLike(gradient));
  return selectByScalar(usable, tf.mul(update, factor), fallback);
}

/**
 * The rescale factor of MKOR step 6 for one tensor,
 *
 *     ν = ‖∇W‖_F / ‖ΔŴ‖_F
 *
 * (norms from {@link frobeniusNorm}, so no overflow or underflow), as a scalar for logging.
 * It is NaN when either input holds NaN/Inf or both norms are 0, and Inf when only the update is
 * 0. {@link rescaleToNorm} rescales exactly when `ν` is finite and positive.
 *
 * @param update the preconditioned update `ΔŴ`; @param gradient the raw gradient `∇W`, same shape.
 * @returns a new float32 scalar; the inputs are not disposed.
 */
export function rescaleFactor(update: tf.Tensor, gradient: tf.Tensor): tf.Scalar {
  checkSameShape('rescaleFactor', ['update', 'gradient'], update, gradient);
  return tf.tidy(() => tf.div(frobeniusNorm(gradient), frobeniusNorm(update)) as tf.Scalar);
}

/**
 * MKOR step 6 (Algorithm 1): rescale the preconditioned update to the gradient's norm,
 *
 *     ΔW = (‖∇W‖_F / ‖ΔŴ‖_F) · ΔŴ
 *
 * so the step keeps the gradient's size and learning-rate schedules keep their meaning.
 *
 * Fallbacks, so that no NaN reaches the weights: when `ν` is not finite and positive — the update
 * is all zeros or holds NaN/Inf (a preconditioner that broke down), or the ratio overflows — the
 * raw gradient is returned (the authors' code likewise skips preconditioning when `ν` is NaN);
 * when the gradient itself holds NaN/Inf, zeros are returned (a skipped step, like
 * `skipNonFinite` in `@mkor/core`). The choice is made on the backend (`selectByScalar` of
 * `@mkor/core`), so nothing is read back. Where the backend has the fused kernel
 * (`FUSED_KERNELS.rescaleToNorm`) the whole of it is one kernel: two reading passes and one
 * writing pass.
 *
 * @returns a new tensor of the gradient's shape; the inputs are not disposed.
 */
export function rescaleToNorm(update: tf.Tensor, gradient: tf.Tensor): tf.Tensor {
  checkSameShape('rescaleToNorm', ['update', 'gradient'], update, gradient);
  return tf.tidy(() => rescaledAndFactor(update, gradient).rescaled);
}

/**
 * {@link rescaleToNorm} and the factor `ν` of {@link rescaleFactor} together, for a caller that
 * logs the factor: the norms are computed once.
 *
 * @returns new tensors `{ rescaled, factor }`; the inputs are not disposed.
 */
export function rescaleToNormWithFactor(update: tf.Tensor, gradient: tf.Tensor): { rescaled: tf.Tensor; factor: tf.Scalar } {
  checkSameShape('rescaleToNormWithFactor', ['update', 'gradient'], update, gradient);
  return tf.tidy(() => rescaledAndFactor(update, gradient));
}

function rescaledAndFactor(update: tf.Tensor, gradient: tf.Tensor): { rescaled: tf.Tensor; factor: tf.Scalar } {
  if (hasFusedKernel('rescaleToNorm')) {
    const [rescaled, factor] = runFusedKernel<[tf.Tensor, tf.Scalar]>('rescaleToNorm', { update, gradient });
    return { rescaled, factor };
  }
  const factor = tf.div(frobeniusNorm(gradient), frobeniusNorm(update)) as tf.Scalar;
  return { rescaled: rescaleOrFallBack(update, gradient, factor, finiteFlag([gradient])), factor };
}

/** `‖weight‖_F + ‖bias‖₂` (the bias term left out when there is none). */
function summedNorm(pair: WeightAndBias): tf.Tensor {
  const weightNorm = frobeniusNorm(pair.weight);
  return pair.bias === undefined ? weightNorm : tf.add(weightNorm, frobeniusNorm(pair.bias));
}

/**
 * The rescale factor of the authors' code, over a layer's weight and bias together:
 *
 *     ν = (‖∇W‖_F + ‖∇b‖₂) / (‖ΔW‖_F + ‖Δb‖₂)
 *
 * (without a bias, `ν = ‖∇W‖_F / ‖ΔW‖_F`, as {@link rescaleFactor}). NaN when any input holds
 * NaN/Inf or both sums are 0, Inf when only the update's is. {@link rescaleToSummedNorms}
 * rescales exactly when `ν` is finite and positive.
 *
 * @returns a new float32 scalar; the inputs are not disposed.
 */
export function rescaleFactorSummedNorms(update: WeightAndBias, gradient: WeightAndBias): tf.Scalar {
  checkPair('rescaleFactorSummedNorms', update, gradient);
  return tf.tidy(() => tf.div(summedNorm(gradient), summedNorm(update)) as tf.Scalar);
}

/**
 * MKOR step 6 as the authors' code does it: one factor for the weight and the bias,
 *
 *     ν = (‖∇W‖_F + ‖∇b‖₂) / (‖ΔW‖_F + ‖Δb‖₂),    ΔW ← ν·ΔW,  Δb ← ν·Δb
 *
 * (a sum of norms, not the norm of `[ΔW | Δb]`: the two differ unless one part is zero). With the
 * same fallbacks as {@link rescaleToNorm}, decided for the layer as a whole: when `ν` is not
 * finite and positive both raw gradients are returned, and when either gradient holds NaN/Inf
 * both outputs are zeros.
 *
 * @param update `{ weight: ΔW, bias?: Δb }`; @param gradient `{ weight: ∇W, bias?: ∇b }` with the
 *   same shapes, a bias in both or in neither.
 * @returns new tensors `{ weight, bias? }` (bias only when given); the inputs are not disposed.
 */
export function rescaleToSummedNorms(update: WeightAndBias, gradient: WeightAndBias): WeightAndBias {
  checkPair('rescaleToSummedNorms', update, gradient);
  return tf.tidy(() => {
    const factor = tf.div(summedNorm(gradient), summedNorm(update));
    const gradientFinite =
      gradient.bias === undefined
        ? finiteFlag([gradient.weight])
        : finiteFlag([gradient.weight, gradient.bias]);
    const weight = rescaleOrFallBack(update.weight, gradient.weight, factor, gradientFinite);
    if (update.bias === undefined || gradient.bias === undefined) return { weight };
    return { weight, bias: rescaleOrFallBack(update.bias, gradient.bias, factor, gradientFinite) };
  });
}
