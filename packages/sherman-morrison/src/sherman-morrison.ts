import { checkFinite as checkAllFinite, checkFloat32, checkNumber, checkSquareMatrix, checkVector, finiteFlag, hasFusedKernel, runFusedKernel } from '@mkor/core';
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

/** The smallest normal float32, 2⁻¹²⁶: the smallest β whose 1/β float32 can hold. */
export const MIN_BETA = 2 ** -126;

/**
 * The parts every form of the update shares, for a symmetric `P = F⁻¹` and a vector `v`, computed
 * with `v` scaled so that nothing overflows or underflows whatever its magnitude: with `σ` the
 * power of two at or just below `max|vᵢ|` (1 for a zero vector) and `w = v/σ`, `u = Pw` (one
 * matrix–vector product, as a `[d, 1]` column), `q = wᵀu` (one dot product) and `1/σ²` (0 when
 * it underflows, ∞ when it overflows, which the forms treat as their limits). A power of two makes
 * the scaling exact: `w`, `1/σ` and `1/σ²` carry no rounding of their own, so the result rounds as
 * the unscaled formula would wherever that one stays finite. Then `vᵀPv = σ²q` and `PvvᵀP = σ²uuᵀ`,
 * which {@link rankOneStep} adds. No value is read back.
 */
export function rankOneParts(inverse: tf.Tensor2D, v: tf.Tensor1D): { u: tf.Tensor2D; quadratic: tf.Scalar; inverseScaleSquared: tf.Scalar } {
  const d = inverse.shape[0];
  const { scaled, inverseScaleSquared } = scaleByPowerOfTwo(v);
  const column = tf.reshape(scaled, [d, 1]);
  const u = tf.matMul(inverse, column) as tf.Tensor2D;
  const quadratic = tf.sum(tf.mul(column, u)) as tf.Scalar;
  return { u, quadratic, inverseScaleSquared };
}

/**
 * `(s·P − c·uuᵀ) / δ`, entry by entry `(P[i, j]·s − (u[i]·u[j])·c) / δ` in float32: the pass over
 * the matrix that every dense form of the update ends with. The outer product is formed as
 * `u_i·u_j`, which is commutative in IEEE arithmetic, so a symmetric `P` gives an exactly symmetric
 * result. Where the backend has the fused kernel (`FUSED_KERNELS.rankOneUpdate` of `@mkor/core`)
 * it is one pass over `P` with no `d × d` intermediate, equal bit for bit; elsewhere the outer
 * product and up to three elementwise kernels (a factor 1 is skipped: multiplying or dividing by 1
 * is exact).
 *
 * @param u - the `[d, 1]` column of {@link rankOneParts}. @param coefficient - `c`, a scalar tensor
 *   (stays on the device). @param scale - `s`. @param divisor - `δ`.
 */
export function rankOneStep(inverse: tf.Tensor2D, u: tf.Tensor2D, coefficient: tf.Scalar, scale: number, divisor: number): tf.Tensor2D {
  return tf.tidy(() => {
    if (inverse.dtype === 'float32' && hasFusedKernel('rankOneUpdate')) {
      return runFusedKernel<tf.Tensor2D>('rankOneUpdate', { matrix: inverse, u, coefficient }, { scale, divisor });
    }
    const outer = tf.mul(u, tf.reshape(u, [1, inverse.shape[0]]));
    const scaled = scale === 1 ? inverse : tf.mul(inverse, tf.scalar(scale));
    const combined = tf.sub(scaled, tf.mul(outer, coefficient));
    return (divisor === 1 ? combined : tf.div(combined, tf.scalar(divisor))) as tf.Tensor2D;
  });
}

/**
 * `w = v/σ` with `σ` the power of two at or just below `max|vᵢ|` (1 for a zero vector; clamped to
 * float32's normal range), and `1/σ²` (0 when it underflows, ∞ when it overflows). A power of two
 * makes the scaling exact. Nothing is read back. Used by every form of the update, dense and
 * low-rank (`lowRankUpdate`).
 */
export function scaleByPowerOfTwo(v: tf.Tensor1D): { scaled: tf.Tensor1D; inverseScaleSquared: tf.Scalar } {
  const largest = tf.max(tf.abs(v));
  // Clamped to float32's normal range so that 2^exponent neither underflows to 0 (a subnormal
  // max|vᵢ|) nor overflows; any power of two keeps the scaling exact.
  const exponent = tf.clipByValue(tf.floor(tf.div(tf.log(largest), tf.scalar(Math.LN2))), -126, 127);
  const scale = tf.where(tf.greater(largest, 0), tf.pow(tf.scalar(2), exponent), tf.onesLike(largest));
  const reciprocal = tf.div(1, scale);
  return { scaled: tf.div(v, scale) as tf.Tensor1D, inverseScaleSquared: tf.mul(reciprocal, reciprocal) as tf.Scalar };
}

/**
 * `(βF + αvvᵀ)⁻¹` from a symmetric `P = F⁻¹`, without validation (callers validate):
 * `(1/β)·(P − c·uuᵀ)` with the scaled parts of {@link rankOneParts} and
 * `c = α/(β/σ² + α·q)` — the Sherman–Morrison identity
 * `(1/β)P − (α/β²)·(Pv)(Pv)ᵀ/(1 + (α/β)vᵀPv)` with β factored out and σ² divided out of the
 * quotient, so that a huge v (its `vᵀPv` beyond float32) gives the finite limit, P's mass along v
 * removed, and a tiny one gives P/β.
 */
export function shermanMorrisonUnchecked(inverse: tf.Tensor2D, v: tf.Tensor1D, beta: number, alpha: number): tf.Tensor2D {
  return tf.tidy(() => {
    if (alpha === 0) return tf.div(inverse, tf.scalar(beta)) as tf.Tensor2D;
    const { u, quadratic, inverseScaleSquared } = rankOneParts(inverse, v);
    const coefficient = tf.div(tf.scalar(alpha), tf.add(tf.mul(tf.scalar(beta), inverseScaleSquared), tf.mul(tf.scalar(alpha), quadratic))) as tf.Scalar;
    return rankOneStep(inverse, u, coefficient, 1, beta);
  });
}

/**
 * Throws unless the inputs and the result of an update are finite: one reduction and one
 * read-back over all of them; on failure, names the input holding NaN/Inf, or says that the result
 * is beyond float32 (e.g. `F⁻¹/β` overflowing for a tiny β). The result (one tensor, or the parts
 * of a low-rank factor) is disposed when refused.
 */
export function checkFiniteUpdate(where: string, inputs: readonly [string, tf.Tensor][], result: tf.Tensor | readonly tf.Tensor[]): void {
  const results = result instanceof tf.Tensor ? [result] : [...result];
  const flag = finiteFlag([...inputs.map(([, t]) => t), ...results]);
  const finite = flag.dataSync()[0] === 1;
  flag.dispose();
  if (finite) return;
  tf.dispose(results);
  for (const [name, t] of inputs) checkAllFinite(where, name, t);
  throw new RangeError(`${where}: the updated inverse is not representable in float32 (an entry overflows); the inputs are finite`);
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
 * Every magnitude of v is handled: v is scaled by its largest entry before any product (see
 * `rankOneParts`), so a v whose `vᵀF⁻¹v` is beyond float32 (entries above ≈ 1e19) gives the
 * finite limit instead of NaN. β must be at least 2⁻¹²⁶ ≈ 1.18e-38 (smaller ones make `1/β`
 * overflow float32), α any non-negative finite number.
 * A symmetric input gives an exactly symmetric result (see the package README). If `F` is
 * symmetric positive definite, so is the result in exact arithmetic; in float32 it is as long
 * as the result is not too ill-conditioned (see `docs/packages/sherman-morrison.md`).
 *
 * @param inverse - `F⁻¹`, a symmetric float32 `[d, d]` matrix. Not disposed.
 * @param v - the rank-1 vector, float32 `[d]`. Not disposed.
 * @returns a new `[d, d]` tensor `(βF + αvvᵀ)⁻¹`.
 * @throws RangeError for a non-square `inverse`, a `v` of the wrong length, β < 2⁻¹²⁶, α < 0,
 *   non-finite β/α, or (with `checkFinite`, one read-back after the update) NaN/Inf in the inputs or
 *   a result beyond float32; TypeError for non-float32 tensors.
 */
export function shermanMorrison(inverse: tf.Tensor2D, v: tf.Tensor1D, options: ShermanMorrisonOptions): tf.Tensor2D {
  const where = 'shermanMorrison';
  const d = checkSquareMatrix(where, 'inverse', inverse);
  checkVector(where, 'v', v, d);
  checkFloat32(where, 'inverse', inverse);
  checkFloat32(where, 'v', v);
  const beta = checkNumber(where, 'beta', options?.beta, { min: MIN_BETA });
  const alpha = checkNumber(where, 'alpha', options?.alpha, { min: 0 });
  const result = shermanMorrisonUnchecked(inverse, v, beta, alpha);
  if (options?.checkFinite ?? true) checkFiniteUpdate(where, [['inverse', inverse], ['v', v]], result);
  return result;
}
