/**
 * The arithmetic around the one-pass refresh: every form of MKOR's inverse-factor update, with the
 * stabiliser's blend before it and a blend toward the identity after it, reduced to the three
 * numbers of `P' = a·P + b·u·uᵀ + c·I` and the vector u. O(d), in float64, on plain arrays.
 */

/** The three named forms of MKOR's inverse-factor update (as in `@mkor/sherman-morrison`). */
export type RefreshForm = 'exact' | 'paper' | 'reference';

/** The forms of {@link RefreshForm}, for validation. */
export const REFRESH_FORMS: readonly RefreshForm[] = ['exact', 'paper', 'reference'];

/** The 0.95 of the authors' `J = 0.95·P + 0.05·I` (the `'reference'` form). */
export const REFERENCE_BLEND = 0.95;

/** What the refresh needs besides the factor and the vector. */
export interface RefreshSettings {
  /** The update form. */
  readonly form: RefreshForm;
  /** Factor momentum γ ∈ (0, 1); unused by `'reference'`. */
  readonly gamma: number;
  /** ζ of the stabiliser's blend `ζ·P + (1−ζ)·I` (eq. 7/8) applied before the update; 1 leaves P as it is. */
  readonly stabilizerZeta: number;
  /** λ of the blend `(1−λ)·P' + λ·I` applied after the update; 0 leaves P' as it is. */
  readonly identityBlend: number;
}

/** `P' = factorScale·P + outerScale·u·uᵀ + identityScale·I`, the whole refresh as one pass over P. */
export interface RefreshPass {
  /** u, float32 `[d]`. */
  readonly u: Float32Array;
  /** The multiple of P. */
  readonly factorScale: number;
  /** The multiple of u·uᵀ. */
  readonly outerScale: number;
  /** The multiple of I. */
  readonly identityScale: number;
}

/**
 * v scaled by a power of two σ ≥ max|vᵢ| (σ = 1 for v = 0), so that no magnitude of v overflows
 * `P·w` or `wᵀP·w` (the same scaling as `@mkor/sherman-morrison`); the division is exact.
 */
export function scaleByPowerOfTwo(v: Float32Array): { scaled: Float32Array; inverseScaleSquared: number } {
  let largest = 0;
  for (const value of v) largest = Math.max(largest, Math.abs(value));
  const sigma = largest === 0 ? 1 : 2 ** Math.ceil(Math.log2(largest));
  const scaled = new Float32Array(v.length);
  for (let i = 0; i < v.length; i++) scaled[i] = (v[i] as number) / sigma;
  return { scaled, inverseScaleSquared: 1 / sigma / sigma };
}

/**
 * The refresh's one pass, from `P·w` (computed on the device) and w = v/σ.
 *
 * With `z` the weight the start matrix gives P — ζ, and 0.95·ζ for `'reference'`, whose
 * `J = 0.95·P̂ + 0.05·I` is then `z·P + (1−z)·I` — the update is taken on `S = z·P + (1−z)·I`:
 * `u = S·w = z·(P·w) + (1−z)·w`, `q = wᵀu`, α = 1 − γ, and (σ² divided out of every term)
 *
 *     exact:      S' = (1/γ)·(S − k·u·uᵀ),   k = α / (γ/σ² + α·q)
 *     paper:      S' = γ·S + k·u·uᵀ,         k = α / (γ²·(1/σ² + γ·α·q))
 *     reference:  S' = S − k·u·uᵀ,           k = 1 / (1/σ² + q)
 *
 * then `P' = (1−λ)·S' + λ·I`. Expanding S gives `factorScale = (1−λ)·s·z`,
 * `identityScale = (1−λ)·s·(1−z) + λ`, `outerScale = (1−λ)·t`, with `S' = s·S + t·u·uᵀ`.
 */
export function refreshPass(settings: RefreshSettings, productOfScaled: Float32Array, scaled: Float32Array, inverseScaleSquared: number): RefreshPass {
  const { form, gamma, stabilizerZeta, identityBlend } = settings;
  const z = form === 'reference' ? REFERENCE_BLEND * stabilizerZeta : stabilizerZeta;
  const u = new Float32Array(scaled.length);
  for (let i = 0; i < u.length; i++) u[i] = z * (productOfScaled[i] as number) + (1 - z) * (scaled[i] as number);
  let q = 0;
  for (let i = 0; i < u.length; i++) q += (scaled[i] as number) * (u[i] as number);
  const alpha = 1 - gamma;
  let startScale: number;
  let outer: number;
  if (form === 'exact') {
    startScale = 1 / gamma;
    outer = -alpha / (gamma * (gamma * inverseScaleSquared + alpha * q));
  } else if (form === 'paper') {
    startScale = gamma;
    outer = alpha / (gamma * gamma * (inverseScaleSquared + gamma * alpha * q));
  } else {
    startScale = 1;
    outer = -1 / (inverseScaleSquared + q);
  }
  const keep = 1 - identityBlend;
  return {
    u,
    factorScale: keep * startScale * z,
    outerScale: keep * outer,
    identityScale: keep * startScale * (1 - z) + identityBlend,
  };
}
