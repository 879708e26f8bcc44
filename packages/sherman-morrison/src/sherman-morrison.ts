import { checkFinite as checkAllFinite, checkNumber, checkSquareMatrix, checkVector } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';

/** Options of {@link shermanMorrison}. */
export interface ShermanMorrisonOptions {
  /** Scale β > 0 of the old matrix in `βF + αvvᵀ`. */
  readonly beta: number;
  /** Weight α ≥ 0 of the rank-1 term in `βF + αvvᵀ`. */
  readonly alpha: number;
  /**
   * Refuse an `inverse` or `v` holding NaN or ±Inf. Costs one scalar read-back per input,
   * so hot paths that check elsewhere turn it off. Default true.
   */
  readonly checkFinite?: boolean;
}

/** Throws a `TypeError` unless `t` is a float32 tensor (the kernels below compute in float32). */
export function checkFloat32(where: string, name: string, t: tf.Tensor): void {
  if (t.dtype !== 'float32') {
    throw new TypeError(`${where}: ${name} must be a float32 tensor, got dtype ${t.dtype}`);
  }
}

/**
 * The parts every form of the update shares, for a symmetric `P = F⁻¹` and a vector `v`:
 * `u = Pv` (one matrix–vector product), `s = vᵀu = vᵀF⁻¹v` (one dot product) and the outer
 * product `uuᵀ`. The outer product is formed as `u_i·u_j` elementwise, which is commutative in
 * IEEE arithmetic, so it is exactly symmetric; any scalar multiple of it added to a symmetric
 * matrix stays exactly symmetric. No value is read back.
 */
export function rankOneParts(inverse: tf.Tensor2D, v: tf.Tensor1D): { outer: tf.Tensor2D; quadratic: tf.Scalar } {
  const d = inverse.shape[0];
  const column = tf.reshape(v, [d, 1]);
  const u = tf.matMul(inverse, column);
  const quadratic = tf.sum(tf.mul(column, u)) as tf.Scalar;
  const outer = tf.mul(u, tf.reshape(u, [1, d])) as tf.Tensor2D;
  return { outer, quadratic };
}

/**
 * `(βF + αvvᵀ)⁻¹` from a symmetric `P = F⁻¹`, without validation (callers validate):
 * `(1/β)·(P − α·uuᵀ/(β + α·vᵀu))` with `u = Pv`, which is the Sherman–Morrison identity
 * `(1/β)P − (α/β²)·uuᵀ/(1 + (α/β)vᵀu)` with β factored out.
 */
export function shermanMorrisonUnchecked(inverse: tf.Tensor2D, v: tf.Tensor1D, beta: number, alpha: number): tf.Tensor2D {
  return tf.tidy(() => {
    const { outer, quadratic } = rankOneParts(inverse, v);
    const coefficient = tf.div(tf.scalar(alpha), tf.add(tf.scalar(beta), tf.mul(tf.scalar(alpha), quadratic)));
    return tf.div(tf.sub(inverse, tf.mul(outer, coefficient)), tf.scalar(beta)) as tf.Tensor2D;
  });
}

/**
 * The Sherman–Morrison update of an inverse, in O(d²):
 *
 *     (βF + αvvᵀ)⁻¹ = (1/β)F⁻¹ − (α/β²)·(F⁻¹v)(F⁻¹v)ᵀ / (1 + (α/β)·vᵀF⁻¹v)
 *
 * from a symmetric `inverse = F⁻¹` (`[d, d]`) and `v` (`[d]`): one matrix–vector product, one
 * dot product and one rank-1 update. With β = γ and α = 1 − γ it is the exact inverse of MKOR's
 * factor momentum `γF + (1−γ)vvᵀ` (eq. 3/4 with a rank-1 covariance).
 *
 * The scalar coefficient stays a tensor, so nothing is read back unless `checkFinite` is on.
 * A symmetric input gives an exactly symmetric result (see the package README). If `F` is
 * symmetric positive definite, so is the result in exact arithmetic; in float32 it is as long
 * as the result is not too ill-conditioned (see `docs/packages/sherman-morrison.md`).
 *
 * @param inverse - `F⁻¹`, a symmetric float32 `[d, d]` matrix. Not disposed.
 * @param v - the rank-1 vector, float32 `[d]`. Not disposed.
 * @returns a new `[d, d]` tensor `(βF + αvvᵀ)⁻¹`.
 * @throws RangeError for a non-square `inverse`, a `v` of the wrong length, β ≤ 0, α < 0,
 *   non-finite β/α, or (with `checkFinite`) NaN/Inf in the inputs; TypeError for non-float32 tensors.
 */
export function shermanMorrison(inverse: tf.Tensor2D, v: tf.Tensor1D, options: ShermanMorrisonOptions): tf.Tensor2D {
  const where = 'shermanMorrison';
  const d = checkSquareMatrix(where, 'inverse', inverse);
  checkVector(where, 'v', v, d);
  checkFloat32(where, 'inverse', inverse);
  checkFloat32(where, 'v', v);
  const beta = checkNumber(where, 'beta', options?.beta, { min: 0, minExclusive: true });
  const alpha = checkNumber(where, 'alpha', options?.alpha, { min: 0 });
  if (options?.checkFinite ?? true) {
    checkAllFinite(where, 'inverse', inverse);
    checkAllFinite(where, 'v', v);
  }
  return shermanMorrisonUnchecked(inverse, v, beta, alpha);
}
