/**
 * Float64 spectral helpers for the positive-definiteness tests of the Sherman–Morrison updates
 * (Lemma 3.1): eigenvalues of a symmetric matrix by the cyclic Jacobi method, and what follows
 * from them.
 */
import { type Matrix64, cholesky, dot, get, matVec, symmetrize } from './float64';
import { type InverseUpdateForm, shermanMorrisonStep64, updateInverseFactor64 } from './sherman-morrison64';

/** The float32 unit roundoff u = 2⁻²⁴ ≈ 6e-8. */
export const FLOAT32_UNIT_ROUNDOFF = 2 ** -24;

/**
 * The eigenvalues of a symmetric matrix, ascending, by cyclic Jacobi rotations in float64
 * (accurate to about 1e-15 relative to the largest; reads the symmetric part `(a + aᵀ)/2`).
 */
export function symmetricEigenvalues(a: Matrix64): Float64Array {
  const d = a.rows;
  if (a.cols !== d) throw new RangeError('symmetricEigenvalues: not square');
  const w = symmetrize(a).data.slice();
  const at = (i: number, j: number): number => w[i * d + j] as number;
  for (let sweep = 0; sweep < 100; sweep++) {
    let offDiagonal = 0;
    let total = 0;
    for (let i = 0; i < d; i++) {
      for (let j = 0; j < d; j++) {
        total += at(i, j) ** 2;
        if (i !== j) offDiagonal += at(i, j) ** 2;
      }
    }
    if (offDiagonal <= 1e-30 * total) break;
    for (let p = 0; p < d - 1; p++) {
      for (let q = p + 1; q < d; q++) {
        const apq = at(p, q);
        if (apq === 0) continue;
        // The rotation that zeroes (p, q): tan θ = t, the smaller root of t² + 2τt − 1 = 0.
        const tau = (at(q, q) - at(p, p)) / (2 * apq);
        const t = Math.sign(tau || 1) / (Math.abs(tau) + Math.sqrt(1 + tau * tau));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = t * c;
        for (let k = 0; k < d; k++) {
          const akp = at(k, p);
          const akq = at(k, q);
          w[k * d + p] = c * akp - s * akq;
          w[k * d + q] = s * akp + c * akq;
        }
        for (let k = 0; k < d; k++) {
          const apk = at(p, k);
          const aqk = at(q, k);
          w[p * d + k] = c * apk - s * aqk;
          w[q * d + k] = s * apk + c * aqk;
        }
      }
    }
  }
  const eigenvalues = Float64Array.from({ length: d }, (_, i) => at(i, i));
  return eigenvalues.sort();
}

/** Whether a symmetric matrix is finite and positive definite (its float64 Cholesky factorisation exists). */
export function isPositiveDefinite(a: Matrix64): boolean {
  return a.data.every(Number.isFinite) && cholesky(a) !== null;
}

/** `λmax/λmin` of a symmetric matrix (Infinity when λmin ≤ 0). */
export function spectralCondition(a: Matrix64): number {
  const eigenvalues = symmetricEigenvalues(a);
  const smallest = eigenvalues[0] as number;
  const largest = eigenvalues[eigenvalues.length - 1] as number;
  return smallest > 0 ? largest / smallest : Number.POSITIVE_INFINITY;
}

/** Whether `a` equals its transpose bit for bit (NaN never equals itself, so NaN fails). */
export function isExactlySymmetric(a: Matrix64): boolean {
  for (let i = 0; i < a.rows; i++) {
    for (let j = 0; j < i; j++) {
      if (!(get(a, i, j) === get(a, j, i))) return false;
    }
  }
  return true;
}

/** The largest eigenvalue of a symmetric matrix (its 2-norm when it is positive semidefinite). */
export function largestEigenvalue(a: Matrix64): number {
  const eigenvalues = symmetricEigenvalues(a);
  return eigenvalues[eigenvalues.length - 1] as number;
}

/**
 * The size M (2-norm) of the two terms the Sherman–Morrison step `(1/β)(P − α·uuᵀ/(β + αs))`
 * combines, `(‖P‖₂ + α‖u‖²/(β + αs))/β` with `u = Pv`, `s = vᵀu`, for a positive-definite `P`.
 * Float32 computes the step with an absolute error of order (d + 4)·u·M ({@link updateRoundingAllowance64}).
 */
export function shermanMorrisonTermSize64(inverse: Matrix64, v: ArrayLike<number>, beta: number, alpha: number): number {
  const u = matVec(inverse, v);
  return (largestEigenvalue(inverse) + (alpha * dot(u, u)) / (beta + alpha * dot(v, u))) / beta;
}

/**
 * `‖ |P|·|v| ‖₂` (entrywise absolute values): the scale of the float32 rounding of `u = Pv`,
 * each `uᵢ` being a sum of d products and off by up to about d·u·(|P||v|)ᵢ. It exceeds `‖u‖`
 * when the products cancel, i.e. when v lies near P's small eigenvectors.
 */
function absoluteProductNorm(inverse: Matrix64, v: ArrayLike<number>): number {
  const d = inverse.rows;
  let sum = 0;
  for (let i = 0; i < d; i++) {
    let row = 0;
    for (let j = 0; j < d; j++) row += Math.abs(get(inverse, i, j) * (v[j] as number));
    sum += row * row;
  }
  return Math.sqrt(sum);
}

/**
 * How much float32 rounding inside the rank-1 term `c·uuᵀ` of an update (`u = Pv`, `s = vᵀu`)
 * is amplified beyond the plain `(d + 4)·u·M` of {@link updateRoundingAllowance64}, relative to M,
 * for a rank-1 coefficient `c = coefficientTop/(denominatorBase + denominatorSlope·s)`:
 * - `s` carries an absolute error up to about d·u·‖P‖₂‖v‖², large against `s` itself when v lies
 *   near P's small eigenvectors (κ(P) up to 1e6 here), and the denominator passes it on relative
 *   to itself: `A_s = slope·‖P‖₂‖v‖²/(base + slope·s)`;
 * - `u` carries an absolute error up to about d·u·‖|P||v|‖ ({@link absoluteProductNorm}), which
 *   `uuᵀ` passes on as `2‖u‖·‖δu‖`: `A_u = c·‖u‖·‖|P||v|‖/M`.
 * `A = A_s + A_u`; both are below 1 when v lies along P's large eigenvectors.
 */
function rankOneAmplification64(
  inverse: Matrix64,
  v: ArrayLike<number>,
  coefficient: { readonly top: number; readonly base: number; readonly slope: number },
  termSize: number,
): number {
  const u = matVec(inverse, v);
  const s = dot(v, u);
  const denominator = coefficient.base + coefficient.slope * s;
  const fromQuadratic = (coefficient.slope * largestEigenvalue(inverse) * dot(v, v)) / denominator;
  const fromProduct = termSize > 0 ? ((coefficient.top / denominator) * Math.sqrt(dot(u, u)) * absoluteProductNorm(inverse, v)) / termSize : 0;
  return fromQuadratic + fromProduct;
}

/**
 * {@link rankOneAmplification64} for the Sherman–Morrison step
 * `(1/β)(P − α·uuᵀ/(β + αs))`, relative to its term size {@link shermanMorrisonTermSize64}.
 */
export function shermanMorrisonAmplification64(inverse: Matrix64, v: ArrayLike<number>, beta: number, alpha: number): number {
  return rankOneAmplification64(inverse, v, { top: alpha / beta, base: beta, slope: alpha }, shermanMorrisonTermSize64(inverse, v, beta, alpha));
}

/**
 * {@link shermanMorrisonAmplification64} for each form of the inverse-factor update: the exact and
 * reference forms on their Sherman–Morrison step ({@link shermanMorrisonStep64}); the paper form,
 * whose rank-1 coefficient is `(1−γ)/(γ²(1 + γ(1−γ)s))`, relative to {@link updateTermSize64}.
 */
export function updateAmplification64(inverse: Matrix64, v: ArrayLike<number>, form: InverseUpdateForm, gamma: number): number {
  if (form === 'paper') {
    return rankOneAmplification64(
      inverse,
      v,
      { top: (1 - gamma) / (gamma * gamma), base: 1, slope: gamma * (1 - gamma) },
      updateTermSize64(inverse, v, 'paper', gamma),
    );
  }
  const step = shermanMorrisonStep64(inverse, form, gamma);
  return shermanMorrisonAmplification64(step.inverse, v, step.beta, step.alpha);
}

/**
 * The size M of the two terms each form of the inverse-factor update combines: the exact and
 * reference forms as {@link shermanMorrisonTermSize64} on their Sherman–Morrison step
 * ({@link shermanMorrisonStep64}); the paper form `γ‖P‖₂ + (1−γ)‖u‖²/(γ²(1 + γ(1−γ)s))`.
 */
export function updateTermSize64(inverse: Matrix64, v: ArrayLike<number>, form: InverseUpdateForm, gamma: number): number {
  if (form === 'paper') {
    const u = matVec(inverse, v);
    const coefficient = (1 - gamma) / (gamma * gamma * (1 + gamma * (1 - gamma) * dot(v, u)));
    return gamma * largestEigenvalue(inverse) + coefficient * dot(u, u);
  }
  const step = shermanMorrisonStep64(inverse, form, gamma);
  return shermanMorrisonTermSize64(step.inverse, v, step.beta, step.alpha);
}

/**
 * The float32 rounding error allowed for one update of a d × d factor whose two terms have size
 * M: `(d + 4)·u·M`. The products behind `u = Pv` and `s = vᵀu` contribute about d roundings; the
 * elementwise product, quotient, difference and scaling that follow contribute a few more, which
 * dominate for small d (measured: the smallest eigenvalue moves by up to 2.2·u·M at d = 1 and 2,
 * by under 1·u·M at d ≥ 8).
 */
export function updateRoundingAllowance64(d: number, termSize: number): number {
  return (d + 4) * FLOAT32_UNIT_ROUNDOFF * termSize;
}

/**
 * The float32 envelope ratio of one inverse-factor update, `ρ = λmin(exact result)/((d + 4)·u·M)`:
 * the smallest eigenvalue of the float64 update over {@link updateRoundingAllowance64}.
 * ρ ≥ 1 means float32 rounding cannot make the result indefinite.
 */
export function updateEnvelopeRatio64(inverse: Matrix64, v: ArrayLike<number>, form: InverseUpdateForm, gamma: number): number {
  const smallest = symmetricEigenvalues(updateInverseFactor64(inverse, v, form, gamma))[0] as number;
  return smallest / updateRoundingAllowance64(inverse.rows, updateTermSize64(inverse, v, form, gamma));
}
