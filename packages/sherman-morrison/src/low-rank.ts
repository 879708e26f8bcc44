import { checkFloat32, checkNumber, checkOneOf, checkVector } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';

import { DEFAULT_GAMMA, INVERSE_UPDATE_FORMS, type InverseUpdateForm, REFERENCE_BLEND } from './inverse-update';
import { checkFiniteUpdate, scaleByPowerOfTwo } from './sherman-morrison';

/**
 * An inverse factor held in low-rank form, `P = c·I + U·diag(m)·Uᵀ`, with a window of `r` terms:
 * `U` is `[d, r]` (one column per term, zeros where unused) and `m` their weights (0 where
 * unused). Every form of MKOR's update keeps this shape — a Sherman–Morrison step scales `c` and
 * `m` and appends the term `u = Pv`, the stabiliser's blend toward I scales them — so refreshing
 * costs O(d·r) and preconditioning O(r·d·n) instead of O(d²) and O(d²·n). The state has a fixed
 * shape (it checkpoints like any other), and nothing about it is read back.
 */
export interface LowRankInverse {
  /** `c`, the multiple of the identity: a float32 scalar. */
  readonly scale: tf.Scalar;
  /** `U`, the terms' vectors as columns, `[d, r]`. */
  readonly basis: tf.Tensor2D;
  /** `m`, the terms' weights, `[r]`. */
  readonly weights: tf.Tensor1D;
}

/** An inverse factor in either representation: a dense `[d, d]` matrix or a {@link LowRankInverse}. */
export type InverseFactor = tf.Tensor2D | LowRankInverse;

/** Whether an inverse factor is held in low-rank form. */
export function isLowRank(factor: InverseFactor): factor is LowRankInverse {
  return !(factor instanceof tf.Tensor);
}

/** The identity of size `d` in low-rank form with room for `rank` terms: `c = 1`, `U = 0`, `m = 0`. */
export function lowRankIdentity(d: number, rank: number): LowRankInverse {
  checkNumber('lowRankIdentity', 'd', d, { min: 1, integer: true });
  checkNumber('lowRankIdentity', 'rank', rank, { min: 1, integer: true });
  return { scale: tf.scalar(1), basis: tf.zeros([d, rank]), weights: tf.zeros([rank]) };
}

/** `c·I + U·diag(m)·Uᵀ` as a dense `[d, d]` matrix (O(d²·r); for inspection, tests and the dense fallback). */
export function lowRankToDense(factor: LowRankInverse): tf.Tensor2D {
  return tf.tidy(() => {
    const d = factor.basis.shape[0];
    const weighted = tf.mul(factor.basis, tf.reshape(factor.weights, [1, -1]));
    return tf.add(tf.mul(tf.eye(d), factor.scale), tf.matMul(weighted, factor.basis, false, true)) as tf.Tensor2D;
  });
}

/**
 * `P·X` (`side: 'left'`, X `[d, n]`) or `X·P` (`side: 'right'`, X `[n, d]`) for an inverse factor
 * in either representation; for the low-rank one `c·X + U·(m ⊙ (UᵀX))`, O(r·d·n).
 */
export function applyInverseFactor(factor: InverseFactor, x: tf.Tensor2D, side: 'left' | 'right'): tf.Tensor2D {
  if (!isLowRank(factor)) return side === 'left' ? tf.matMul(factor, x) : tf.matMul(x, factor);
  return tf.tidy(() => {
    const { scale, basis, weights } = factor;
    if (side === 'left') {
      const projected = tf.mul(tf.matMul(basis, x, true, false), tf.reshape(weights, [-1, 1]));
      return tf.add(tf.mul(x, scale), tf.matMul(basis, projected)) as tf.Tensor2D;
    }
    const projected = tf.mul(tf.matMul(x, basis), tf.reshape(weights, [1, -1]));
    return tf.add(tf.mul(x, scale), tf.matMul(projected, basis, false, true)) as tf.Tensor2D;
  });
}

/** `P·w` for a vector, O(d·r): `c·w + U·(m ⊙ (Uᵀw))`. */
function lowRankTimesVector(factor: LowRankInverse, w: tf.Tensor1D): tf.Tensor1D {
  const column = tf.reshape(w, [-1, 1]) as tf.Tensor2D;
  return tf.reshape(applyInverseFactor(factor, column, 'left'), [-1]) as tf.Tensor1D;
}

/** What {@link updateLowRankInverse} returns. */
export interface LowRankUpdate {
  /** The updated factor. */
  readonly inverse: LowRankInverse;
  /**
   * `|m_k|·‖u_k‖²` of the term dropped to make room (0 while the window had a free slot): the
   * exact 2-norm of what the truncation changed, `‖P̃ − P‖₂`. A float32 scalar on the device.
   */
  readonly dropped: tf.Scalar;
}

/** Options of {@link updateLowRankInverse}. */
export interface LowRankUpdateOptions {
  /** Which update (see `InverseUpdateForm`). Default `'exact'`. */
  readonly form?: InverseUpdateForm;
  /** Factor momentum γ ∈ (0, 1). Default 0.95. Unused by the `'reference'` form. */
  readonly gamma?: number;
  /**
   * Refuse inputs holding NaN or ±Inf, and a result beyond float32 (one scalar read-back after the
   * update, as `updateInverseFactor` does). Default true; hot paths that check the factors
   * elsewhere (the MKOR block) turn it off.
   */
  readonly checkFinite?: boolean;
}

/**
 * One MKOR inverse-factor update (eq. 5/6, in the chosen form) of a factor in low-rank form,
 * `P = c·I + U·diag(m)·Uᵀ`, in O(d·r) with nothing read back but
 * the optional finite check:
 *
 * - `'exact'`:  `P' = (1/γ)(P − α·uuᵀ/(γ + α·vᵀu))`, α = 1 − γ, u = Pv: `c' = c/γ`, `m' = m/γ`, and
 *   the term `u` with weight `−α/(γ(γ + α·vᵀu))` appended;
 * - `'paper'`:  `P' = γP + (1−γ)/(γ²(1 + γ(1−γ)vᵀu))·uuᵀ`: `c' = γc`, `m' = γm`, a positive term appended;
 * - `'reference'`: `J = 0.95P + 0.05I` (`c_J = 0.95c + 0.05`, `m_J = 0.95m`), then
 *   `P' = J − (Jv)(Jv)ᵀ/(1 + vᵀJv)`.
 *
 * `v` is scaled by a power of two first, exactly as the dense update does, so no magnitude of `v`
 * overflows. The new term takes a free slot (weight 0) if there is one; otherwise it replaces the
 * term of least `|m_k|·‖u_k‖²`, which is returned as `dropped`. While the window holds every term
 * the result equals the dense update exactly (in exact arithmetic); a drop changes P by exactly
 * `dropped` in the 2-norm. In the exact and reference forms every weight is negative, so a drop
 * only adds a positive semidefinite term: `P̃ ⪰ P`, and `P̃` stays positive definite whenever `P`
 * is (Lemma 3.1 carries over); in the paper form every weight is positive and `P̃ ⪰ c'·I ≻ 0`.
 *
 * @param inverse - the factor, float32 (`scale` a scalar, `basis` `[d, r]`, `weights` `[r]`). Not disposed.
 * @param v - the rank-1 vector, float32 `[d]`. Not disposed.
 * Nothing is read back unless `checkFinite` is on (the default), which checks inputs and result
 * with one read-back after the update.
 *
 * @throws RangeError for mismatched shapes, γ outside (0, 1), an unknown form or (with
 *   `checkFinite`) NaN/Inf in the inputs or a result beyond float32; TypeError for non-float32 tensors.
 */
export function updateLowRankInverse(inverse: LowRankInverse, v: tf.Tensor1D, options: LowRankUpdateOptions = {}): LowRankUpdate {
  const where = 'updateLowRankInverse';
  checkLowRank(where, inverse);
  checkVector(where, 'v', v, inverse.basis.shape[0]);
  checkFloat32(where, 'v', v);
  const form = checkOneOf(where, 'form', options.form ?? 'exact', INVERSE_UPDATE_FORMS);
  const gamma = checkNumber(where, 'gamma', options.gamma ?? DEFAULT_GAMMA, { min: 0, max: 1, minExclusive: true, maxExclusive: true });
  const checkFinite = options.checkFinite ?? true;
  if (typeof checkFinite !== 'boolean') throw new TypeError(`${where}: checkFinite must be a boolean, got ${String(checkFinite)}`);
  const result = tf.tidy(() => {
    // The factor the new term is computed against: P itself, or the reference form's blend J.
    const start: LowRankInverse =
      form === 'reference'
        ? {
            scale: tf.add(tf.mul(inverse.scale, REFERENCE_BLEND), 1 - REFERENCE_BLEND) as tf.Scalar,
            basis: inverse.basis,
            weights: tf.mul(inverse.weights, REFERENCE_BLEND) as tf.Tensor1D,
          }
        : inverse;
    const { scaled, inverseScaleSquared } = scaleByPowerOfTwo(v);
    const u = lowRankTimesVector(start, scaled);
    const quadratic = tf.sum(tf.mul(scaled, u));
    // The new term's weight and the factor every old part is multiplied by, per form (σ² divided out).
    let multiplier: number;
    let weight: tf.Scalar;
    if (form === 'exact') {
      const alpha = 1 - gamma;
      multiplier = 1 / gamma;
      weight = tf.neg(tf.div(alpha, tf.mul(gamma, tf.add(tf.mul(inverseScaleSquared, gamma), tf.mul(quadratic, alpha))))) as tf.Scalar;
    } else if (form === 'paper') {
      multiplier = gamma;
      weight = tf.div(1 - gamma, tf.mul(gamma * gamma, tf.add(inverseScaleSquared, tf.mul(quadratic, gamma * (1 - gamma))))) as tf.Scalar;
    } else {
      multiplier = 1;
      weight = tf.neg(tf.div(1, tf.add(inverseScaleSquared, quadratic))) as tf.Scalar;
    }
    const oldWeights = tf.mul(start.weights, multiplier);
    // The slot of least |m_k|·‖u_k‖² (a free slot has 0).
    const sizes = tf.mul(tf.abs(oldWeights), tf.sum(tf.square(start.basis), 0));
    const slot = tf.argMin(sizes);
    const dropped = tf.min(sizes) as tf.Scalar;
    // (tf.oneHot's dtype is not honoured by the wasm backend in tfjs 4.22: compare with a range instead.)
    const mask = tf.cast(tf.equal(tf.range(0, start.basis.shape[1] as number, 1, 'int32'), slot), 'float32') as tf.Tensor1D;
    const keep = tf.sub(1, mask);
    const basis = tf.add(tf.mul(start.basis, tf.reshape(keep, [1, -1])), tf.mul(tf.reshape(u, [-1, 1]), tf.reshape(mask, [1, -1]))) as tf.Tensor2D;
    const weights = tf.add(tf.mul(oldWeights, keep), tf.mul(mask, weight)) as tf.Tensor1D;
    return { inverse: { scale: tf.mul(start.scale, multiplier) as tf.Scalar, basis, weights }, dropped };
  });
  if (checkFinite) {
    checkFiniteUpdate(
      where,
      [['inverse.scale', inverse.scale], ['inverse.basis', inverse.basis], ['inverse.weights', inverse.weights], ['v', v]],
      [result.inverse.scale, result.inverse.basis, result.inverse.weights, result.dropped],
    );
  }
  return result;
}

/** The stabiliser's blend toward I (eq. 7/8), `ζP + (1−ζ)I`, in low-rank form: `c' = ζc + 1 − ζ`, `m' = ζm`. */
export function blendLowRankTowardIdentity(inverse: LowRankInverse, zeta: number): LowRankInverse {
  checkNumber('blendLowRankTowardIdentity', 'zeta', zeta, { min: 0, max: 1 });
  return tf.tidy(() => ({
    scale: tf.add(tf.mul(inverse.scale, zeta), 1 - zeta) as tf.Scalar,
    basis: tf.clone(inverse.basis),
    weights: tf.mul(inverse.weights, zeta) as tf.Tensor1D,
  }));
}

/**
 * An upper bound of `‖P‖∞` (the largest absolute row sum) of a low-rank factor, in O(d·r):
 * `|c| + maxᵢ Σ_k |U_ik|·|m_k|·‖U_k‖₁`. It is at least the exact norm (so a stabiliser testing it
 * fires no later than on the dense factor) and equals it for `U = 0`; it also bounds the largest
 * absolute entry. A float32 scalar on the device.
 */
export function lowRankNormBound(inverse: LowRankInverse): tf.Scalar {
  return tf.tidy(() => {
    const magnitudes = tf.abs(inverse.basis);
    const columnSums = tf.sum(magnitudes, 0);
    const rowBounds = tf.matMul(magnitudes, tf.reshape(tf.mul(tf.abs(inverse.weights), columnSums), [-1, 1]));
    return tf.add(tf.abs(inverse.scale), tf.max(rowBounds)) as tf.Scalar;
  });
}

/** Checks a low-rank factor's parts: a float32 scalar, a `[d, r]` basis and `[r]` weights. */
function checkLowRank(where: string, inverse: LowRankInverse): void {
  if (typeof inverse !== 'object' || inverse === null || inverse instanceof tf.Tensor) {
    throw new TypeError(`${where}: inverse must be a low-rank factor { scale, basis, weights }`);
  }
  checkFloat32(where, 'inverse.scale', inverse.scale);
  checkFloat32(where, 'inverse.basis', inverse.basis);
  checkFloat32(where, 'inverse.weights', inverse.weights);
  if (inverse.scale.size !== 1 || inverse.basis.rank !== 2 || inverse.weights.rank !== 1 || inverse.weights.shape[0] !== inverse.basis.shape[1]) {
    throw new RangeError(
      `${where}: inverse must hold a scalar scale, a [d, r] basis and [r] weights, got [${inverse.scale.shape.join(', ')}], ` +
        `[${inverse.basis.shape.join(', ')}] and [${inverse.weights.shape.join(', ')}]`,
    );
  }
}
