import { checkFloat32, checkNumber, checkOneOf, checkRank, checkSquareMatrix, checkVector } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';

import { checkFiniteUpdate, rankOneParts, rankOneStep, shermanMorrisonUnchecked } from './sherman-morrison';

/**
 * The three forms of MKOR's inverse-factor update found in the wild:
 *
 * - `'exact'` — the inverse of the factor momentum `γF + (1−γ)vvᵀ` (eq. 3/4), by
 *   Sherman–Morrison with β = γ, α = 1 − γ:
 *   `F⁻¹ ← (1/γ)F⁻¹ − ((1−γ)/γ²)·(F⁻¹v)(F⁻¹v)ᵀ / (1 + ((1−γ)/γ)·vᵀF⁻¹v)`.
 * - `'paper'` — eq. 5/6 and Algorithm 1 as printed:
 *   `F⁻¹ ← γF⁻¹ + (1−γ)/(γ²(1 + γ(1−γ)vᵀF⁻¹v))·F⁻¹vvᵀF⁻¹` (note the plus sign: it is not
 *   the inverse of eq. 3/4).
 * - `'reference'` — the authors' public code: `J = 0.95F⁻¹ + 0.05I`, then
 *   `F⁻¹ ← J − (Jv)(Jv)ᵀ/(1 + vᵀJv)`, i.e. `(J⁻¹ + vvᵀ)⁻¹`; γ is not used.
 */
export type InverseUpdateForm = 'exact' | 'paper' | 'reference';

/** The forms of {@link InverseUpdateForm}, in a list for validation and iteration. */
export const INVERSE_UPDATE_FORMS: readonly InverseUpdateForm[] = ['exact', 'paper', 'reference'];

/** The default form of {@link updateInverseFactor}: `'exact'`, the paper's stated intent. */
export const DEFAULT_INVERSE_UPDATE_FORM: InverseUpdateForm = 'exact';

/** The default factor momentum γ: 0.95, the value of the paper and of the authors' code (KAISA's too). */
export const DEFAULT_GAMMA = 0.95;

/** The weight of the old inverse factor in the authors' blend `J = 0.95F⁻¹ + 0.05I` (`'reference'` form). */
export const REFERENCE_BLEND = 0.95;

/** Options of {@link updateInverseFactor} and {@link updateInverseFactorRankR}. */
export interface InverseUpdateOptions {
  /** Which update (see {@link InverseUpdateForm}). Default `'exact'`. */
  readonly form?: InverseUpdateForm;
  /** Factor momentum γ ∈ (0, 1). Default 0.95. Validated but unused by the `'reference'` form. */
  readonly gamma?: number;
  /**
   * Refuse inputs holding NaN or ±Inf, and a result beyond float32 (one scalar read-back after
   * the update, for inputs and result together). Default true; hot paths that check the factors
   * elsewhere turn it off.
   */
  readonly checkFinite?: boolean;
}

/**
 * The printed eq. 5/6 written with (β, α) so that β = γ, α = 1 − γ gives it back:
 * `βP + α/(β²(1 + βα·vᵀPv))·PvvᵀP`, computed with the scaled parts of `rankOneParts` as
 * `βP + α/(β²(1/σ² + βα·q))·uuᵀ`, so that no magnitude of v overflows.
 */
function paperStep(inverse: tf.Tensor2D, v: tf.Tensor1D, beta: number, alpha: number): tf.Tensor2D {
  return tf.tidy(() => {
    const { u, quadratic, inverseScaleSquared } = rankOneParts(inverse, v);
    const denominator = tf.mul(tf.scalar(beta * beta), tf.add(inverseScaleSquared, tf.mul(tf.scalar(beta * alpha), quadratic)));
    // βP + c·uuᵀ = (βP − (−c)·uuᵀ)/1, exactly: negation and a division by 1 round nothing.
    return rankOneStep(inverse, u, tf.neg(tf.div(tf.scalar(alpha), denominator)) as tf.Scalar, beta, 1);
  });
}

/** `0.95P + 0.05I`: symmetric when P is (elementwise ops and a symmetric identity). */
function referenceBlend(inverse: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(
    () =>
      tf.add(
        tf.mul(inverse, tf.scalar(REFERENCE_BLEND)),
        tf.mul(tf.eye(inverse.shape[0]), tf.scalar(1 - REFERENCE_BLEND)),
      ) as tf.Tensor2D,
  );
}

/**
 * Applies the rank-1 vectors one after the other. The momentum γ is applied once, on the first
 * vector (β = γ); every later vector enters with β = 1 and the same weight α = 1 − γ. For the
 * `'exact'` form the result is therefore exactly `(γF + (1−γ)Σᵢ vᵢvᵢᵀ)⁻¹`. The `'reference'`
 * form blends toward I once, then applies plain Sherman–Morrison steps (β = α = 1).
 */
function applyVectors(inverse: tf.Tensor2D, vectors: readonly tf.Tensor1D[], form: InverseUpdateForm, gamma: number): tf.Tensor2D {
  return tf.tidy(() => {
    if (form === 'reference') {
      return vectors.reduce((current, v) => shermanMorrisonUnchecked(current, v, 1, 1), referenceBlend(inverse));
    }
    const step = form === 'exact' ? shermanMorrisonUnchecked : paperStep;
    return vectors.reduce((current, v, i) => step(current, v, i === 0 ? gamma : 1, 1 - gamma), inverse);
  });
}

function resolveOptions(where: string, options: InverseUpdateOptions | undefined): { form: InverseUpdateForm; gamma: number; checkFinite: boolean } {
  const form = checkOneOf(where, 'form', options?.form ?? DEFAULT_INVERSE_UPDATE_FORM, INVERSE_UPDATE_FORMS);
  const gamma = checkNumber(where, 'gamma', options?.gamma ?? DEFAULT_GAMMA, {
    min: 0,
    max: 1,
    minExclusive: true,
    maxExclusive: true,
  });
  return { form, gamma, checkFinite: options?.checkFinite ?? true };
}

/**
 * One MKOR inverse-factor update (Algorithm 1, lines 7–8; eq. 5/6) in O(d²), in the chosen
 * {@link InverseUpdateForm}. With the default `'exact'` form:
 *
 *     F⁻¹ₜ = (γFₜ₋₁ + (1−γ)vvᵀ)⁻¹
 *          = (1/γ)F⁻¹ₜ₋₁ − ((1−γ)/γ²)·(F⁻¹ₜ₋₁v)(F⁻¹ₜ₋₁v)ᵀ / (1 + ((1−γ)/γ)·vᵀF⁻¹ₜ₋₁v)
 *
 * where `v` is the layer's rank-1 vector (`a` for the input factor R, `g` for the output factor L).
 * A symmetric input gives an exactly symmetric result. Every magnitude of v is handled (it is
 * scaled by its largest entry before any product). Nothing is read back unless `checkFinite` is
 * on, which checks inputs and result with one read-back after the update.
 *
 * @param inverse - the current inverse factor `F⁻¹ₜ₋₁`, symmetric float32 `[d, d]`. Not disposed.
 * @param v - the rank-1 vector, float32 `[d]`. Not disposed.
 * @returns a new `[d, d]` tensor, the updated inverse factor.
 * @throws RangeError for shape mismatches, γ outside (0, 1), an unknown form or (with
 *   `checkFinite`) NaN/Inf in the inputs; TypeError for non-float32 tensors.
 */
export function updateInverseFactor(inverse: tf.Tensor2D, v: tf.Tensor1D, options: InverseUpdateOptions = {}): tf.Tensor2D {
  const where = 'updateInverseFactor';
  const d = checkSquareMatrix(where, 'inverse', inverse);
  checkVector(where, 'v', v, d);
  checkFloat32(where, 'inverse', inverse);
  checkFloat32(where, 'v', v);
  const { form, gamma, checkFinite } = resolveOptions(where, options);
  const result = applyVectors(inverse, [v], form, gamma);
  if (checkFinite) checkFiniteUpdate(where, [['inverse', inverse], ['v', v]], result);
  return result;
}

/**
 * The paper's higher-rank extension (§ "Extending MKOR to higher ranks"): for a covariance
 * `C = Σᵢ vᵢvᵢᵀ` of rank r, the inverse is updated by r successive Sherman–Morrison steps,
 * O(r·d²) in all. γ is applied once, on the first vector; later vectors enter with β = 1 and
 * weight 1 − γ, so in the `'exact'` form
 *
 *     F⁻¹ₜ = (γFₜ₋₁ + (1−γ)·Σᵢ vᵢvᵢᵀ)⁻¹
 *
 * exactly (scale the rows by 1/√r for the mean instead of the sum). The `'paper'` form applies its
 * printed step with (β, α) = (γ, 1−γ) first and (1, 1−γ) after; the `'reference'` form blends
 * `0.95F⁻¹ + 0.05I` once and then takes r plain steps `J ← J − (Jvᵢ)(Jvᵢ)ᵀ/(1 + vᵢᵀJvᵢ)`.
 * With one row it equals {@link updateInverseFactor}.
 *
 * @param inverse - the current inverse factor, symmetric float32 `[d, d]`. Not disposed.
 * @param vectors - the r ≥ 1 vectors as the rows of a float32 `[r, d]` matrix. Not disposed.
 * @returns a new `[d, d]` tensor, the updated inverse factor.
 * @throws RangeError for shape mismatches, r = 0, γ outside (0, 1), an unknown form or (with
 *   `checkFinite`) NaN/Inf in the inputs; TypeError for non-float32 tensors.
 */
export function updateInverseFactorRankR(
  inverse: tf.Tensor2D,
  vectors: tf.Tensor2D,
  options: InverseUpdateOptions = {},
): tf.Tensor2D {
  const where = 'updateInverseFactorRankR';
  const d = checkSquareMatrix(where, 'inverse', inverse);
  const [rank, length] = checkRank(where, 'vectors', vectors, 2) as [number, number];
  if (length !== d || rank === 0) {
    throw new RangeError(`${where}: vectors must have shape [r, ${d}] with r ≥ 1, got [${rank}, ${length}]`);
  }
  checkFloat32(where, 'inverse', inverse);
  checkFloat32(where, 'vectors', vectors);
  const { form, gamma, checkFinite } = resolveOptions(where, options);
  const result = tf.tidy(() => applyVectors(inverse, tf.unstack(vectors) as tf.Tensor1D[], form, gamma));
  if (checkFinite) checkFiniteUpdate(where, [['inverse', inverse], ['vectors', vectors]], result);
  return result;
}
