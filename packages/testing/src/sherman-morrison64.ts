/**
 * Float64 references of the Sherman–Morrison inverse-factor updates (see shared MKOR-SPEC.md),
 * written from the formulas, for the tensor implementations to be checked against.
 */
import { type Matrix64, combine, dot, identity, matVec, outer } from './float64';

/**
 * `(βF + αvvᵀ)⁻¹ = (1/β)F⁻¹ − (α/β²)·uuᵀ/(1 + (α/β)·vᵀu)`, with `u = F⁻¹v`, from a symmetric `F⁻¹`.
 */
export function shermanMorrison64(inverse: Matrix64, v: ArrayLike<number>, beta: number, alpha: number): Matrix64 {
  const u = matVec(inverse, v);
  const denominator = 1 + (alpha / beta) * dot(v, u);
  return combine(1 / beta, inverse, -alpha / (beta * beta * denominator), outer(u, u));
}

/** The three named forms of MKOR's inverse-factor update. */
export type InverseUpdateForm = 'exact' | 'paper' | 'reference';

/** The forms of {@link InverseUpdateForm} that are a plain Sherman–Morrison step. */
export type ShermanMorrisonForm = Exclude<InverseUpdateForm, 'paper'>;

/**
 * The plain Sherman–Morrison step `(βF + αvvᵀ)⁻¹` (see {@link shermanMorrison64}) that the exact
 * and reference forms apply: the exact form on `F⁻¹` with β = γ, α = 1 − γ; the reference form
 * on `J = 0.95F⁻¹ + 0.05I` with β = α = 1.
 */
export function shermanMorrisonStep64(
  inverse: Matrix64,
  form: ShermanMorrisonForm,
  gamma: number,
): { inverse: Matrix64; beta: number; alpha: number } {
  return form === 'exact'
    ? { inverse, beta: gamma, alpha: 1 - gamma }
    : { inverse: blendTowardIdentity64(inverse, 0.95), beta: 1, alpha: 1 };
}

/**
 * One inverse-factor update in float64:
 * - `exact`: Sherman–Morrison with β = γ, α = 1 − γ (inverse of `γF + (1−γ)vvᵀ`);
 * - `paper`: eq. 5/6 as printed, `γF⁻¹ + (1−γ)/(γ²(1 + γ(1−γ)vᵀF⁻¹v))·F⁻¹vvᵀF⁻¹`;
 * - `reference`: the authors' code, `J = 0.95F⁻¹ + 0.05I`, then `J − (Jv)(Jv)ᵀ/(1 + vᵀJv)`.
 */
export function updateInverseFactor64(
  inverse: Matrix64,
  v: ArrayLike<number>,
  form: InverseUpdateForm,
  gamma: number,
): Matrix64 {
  if (form === 'paper') {
    const u = matVec(inverse, v);
    const coefficient = (1 - gamma) / (gamma * gamma * (1 + gamma * (1 - gamma) * dot(v, u)));
    return combine(gamma, inverse, coefficient, outer(u, u));
  }
  const step = shermanMorrisonStep64(inverse, form, gamma);
  return shermanMorrison64(step.inverse, v, step.beta, step.alpha);
}

/** `ζF⁻¹ + (1−ζ)I`: the stabiliser's blend towards the identity (eq. 7/8). */
export function blendTowardIdentity64(inverse: Matrix64, zeta: number): Matrix64 {
  return combine(zeta, inverse, 1 - zeta, identity(inverse.rows));
}

