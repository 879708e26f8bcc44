/**
 * Lemma 3.2 of the MKOR paper: if every input of the inverse-factor update (eq. 5/6: F⁻¹ and v)
 * is quantised with maximum error ε, entries are bounded by m and the dimension is d, the error of
 * the updated factor is O((γ + 4(1−γ)/γ²·m³d²)·ε). Here with a concrete constant, checked on
 * random inputs quantised to float16, and shown to fail for an 8-bit quantiser.
 *
 * ── The bound, derived ───────────────────────────────────────────────────────────────────────────
 * Write P = F⁻¹ (symmetric positive definite), u = Pv, s = vᵀPv ≥ 0, K = (1−γ)/γ². Eq. 5/6 as
 * printed ('paper' form) is
 *     F'(P, v) = γP + c(s)·uuᵀ,   c(s) = K / (1 + a·s),   a = γ(1−γ);
 * the 'exact' Sherman–Morrison form is F'(P, v) = P/γ − c(s)·uuᵀ with the same K and a = (1−γ)/γ.
 * The quantised inputs are P̃ = P + E, ṽ = v + e. Assumptions: |P_ij| ≤ m, |v_i| ≤ m,
 * |E_ij| ≤ ε, |e_i| ≤ ε, ε = ρm with ρ ≤ 2⁻¹¹ (float16's unit roundoff), and P̃ symmetric positive
 * semidefinite (then s̃ = ṽᵀP̃ṽ ≥ 0). Error norm: the largest absolute entry, ‖X‖max = max|X_ij|.
 *
 * F'(P̃, ṽ) − F'(P, v) = (γ or 1/γ)·E ± [ c(s̃)·(ũũᵀ − uuᵀ) + (c(s̃) − c(s))·uuᵀ ], and
 *  (1) ‖γE‖max ≤ γε (‖E/γ‖max ≤ ε/γ for 'exact').
 *  (2) |u_i| ≤ d·m², |ũ_i| ≤ d(m+ε)², and δu = ũ − u = P·e + E·ṽ gives |δu_i| ≤ dmε + dε(m+ε)
 *      = dε(2m+ε).
 *  (3) ũ_iũ_j − u_iu_j = δu_i·ũ_j + u_i·δu_j, so ‖ũũᵀ − uuᵀ‖max ≤ dε(2m+ε)·d((m+ε)² + m²)
 *      = d²m³ε·(2+ρ)((1+ρ)² + 1); with 0 ≤ c(s̃) ≤ K (s̃ ≥ 0) this term is ≤ K·d²m³ε·(2+ρ)(2+2ρ+ρ²).
 *      At ρ = 0 that is the paper's 4(1−γ)/γ²·m³d²·ε.
 *  (4) The coefficient moves too: c(s̃) − c(s) = −K·a(s̃ − s) / ((1+as)(1+as̃)), and
 *      s̃ − s = eᵀũ + vᵀδu, so |s̃ − s| ≤ dε·d(m+ε)² + dm·dε(2m+ε) = d²m²ε·(3 + 3ρ + ρ²).
 *      P is positive semidefinite, so by Cauchy–Schwarz in the P inner product
 *      |u_i| = |e_iᵀPv| ≤ √(P_ii·s), hence |u_iu_j| ≤ √(P_iiP_jj)·s ≤ m·s. Then
 *      |c(s̃) − c(s)|·|u_iu_j| ≤ K·m·|s̃ − s| · [as/(1+as)] · [1/(1+as̃)] ≤ K·m·|s̃ − s|
 *      ≤ K·d²m³ε·(3 + 3ρ + ρ²).
 * Sum: ‖ΔF'‖max ≤ γε + K·d²m³ε·B(ρ), B(ρ) = (2+ρ)(2+2ρ+ρ²) + 3 + 3ρ + ρ² = 7 + 9ρ + 5ρ² + ρ³.
 * Since B/4 ≥ 1, ‖ΔF'‖max ≤ C·(γ + 4(1−γ)/γ²·m³d²)·ε with C = B(2⁻¹¹)/4 ≈ 1.7511 — the lemma's
 * form; for 'exact' the same with γ replaced by 1/γ in the first term. (The 3 of step 4 is the
 * change of the scalar coefficient through vᵀF⁻¹v, which the paper's O(·) absorbs.)
 *
 * ── The check ────────────────────────────────────────────────────────────────────────────────────
 * Random inputs: d ∈ [1, 16]; P = Q·diag(λ)·Qᵀ with Q a random orthogonal matrix, λ_max ∈ [0.1, 10]
 * and condition ≤ 50; v with entries uniform in [−σ, σ], σ ∈ [0.1, 10]; γ ∈ [0.1, 0.99]; all
 * rounded to float32 first (so that float32 → float16 is the only rounding). m is the largest
 * |entry| of P and v. Rounding is symmetric, so P̃ is symmetric, and ‖E‖₂ ≤ ‖E‖_F ≤ dε ≤
 * 16·2⁻¹¹·λ_max < λ_max/50 ≤ λ_min(P) (ε of P's entries is ≤ 2⁻¹¹·max|P_ij| ≤ 2⁻¹¹λ_max), so P̃ is
 * positive definite; the test also confirms it with a float64 Cholesky factorisation.
 * Both F' are evaluated in float64 (`updateInverseFactor64`); each evaluation adds an absolute
 * error of at most about (2d + 8)·2⁻⁵³·(γ(m+ε) + K·d²(m+ε)⁴) per entry (the entries' size, see
 * (2)), below 1e-14·(γ·m + K·d²m⁴) for d ≤ 16 (1/γ for γ in 'exact'). The check allows a slack
 * of 1e-13·(γ·m + K·d²m⁴), at most 1e-13·m/(C·ε) of the bound: about 2e-10 of it for the typical
 * ε ≈ 2⁻¹²·m.
 */
import {
  type InverseUpdateForm,
  type Matrix64,
  cholesky,
  combine,
  fromSpectrum,
  matrix,
  maxAbs,
  orthogonalFrom,
  updateInverseFactor64,
} from '@mkor/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { FLOAT16_UNIT_ROUNDOFF, decodeFloat16, encodeFloat16 } from './index';

/** B(ρ) of the derivation at ρ = 2⁻¹¹, over 4: the lemma's constant. */
const rho = FLOAT16_UNIT_ROUNDOFF;
const C = (7 + 9 * rho + 5 * rho ** 2 + rho ** 3) / 4;

/**
 * Uniform on [−1, 1] in steps of 2⁻³⁰. (fc.double draws uniformly over float64 bit patterns, so
 * most of its values are tiny — |x| < 1e-100 — which would make nearly every input exact in fp16.)
 */
const uniformUnit = fc.integer({ min: -(2 ** 30), max: 2 ** 30 }).map((k) => k / 2 ** 30);
const uniformIn = (lo: number, hi: number): fc.Arbitrary<number> => uniformUnit.map((t) => lo + ((t + 1) / 2) * (hi - lo));

interface LemmaInputs {
  readonly inverse: Matrix64;
  readonly v: Float64Array;
  readonly gamma: number;
}

const lemmaInputs: fc.Arbitrary<LemmaInputs> = fc.integer({ min: 1, max: 16 }).chain((d) =>
  fc
    .record({
      seed: fc.array(uniformUnit, { minLength: d * d, maxLength: d * d }),
      log10Top: uniformIn(-1, 1),
      log10Condition: uniformIn(0, Math.log10(50)),
      positions: fc.array(uniformIn(0, 1), { minLength: d, maxLength: d }),
      vEntries: fc.array(uniformUnit, { minLength: d, maxLength: d }),
      log10VScale: uniformIn(-1, 1),
      gamma: uniformIn(0.1, 0.99),
    })
    .map(({ seed, log10Top, log10Condition, positions, vEntries, log10VScale, gamma }) => {
      // Largest eigenvalue 10^top, smallest 10^(top − log10Condition), the rest in between.
      const eigenvalues = positions.map((p, i) => 10 ** (log10Top - (i === 0 ? 0 : i === d - 1 ? 1 : p) * log10Condition));
      const spd = fromSpectrum(orthogonalFrom(matrix(d, d, seed)), eigenvalues);
      return {
        inverse: matrix(d, d, spd.data.map(Math.fround)),
        v: Float64Array.from(vEntries, (x) => Math.fround(x * 10 ** log10VScale)),
        gamma,
      };
    }),
);

/** A quantiser: the values as stored, given the bound m on their magnitudes. */
type Quantiser = (values: Float64Array, m: number) => Float64Array;

const float16Quantiser: Quantiser = (values) => Float64Array.from(decodeFloat16(encodeFloat16(Float32Array.from(values))));

/** Uniform 8-bit quantiser over [−m, m]: 256 levels −m + k·2m/255, round to nearest; error ≤ m/255. */
const uniform8BitQuantiser: Quantiser = (values, m) => {
  const step = (2 * m) / 255;
  return values.map((x) => -m + step * Math.round((x + m) / step));
};

function largestDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let largest = 0;
  for (let i = 0; i < a.length; i++) largest = Math.max(largest, Math.abs((a[i] as number) - (b[i] as number)));
  return largest;
}

type EpsilonChoice = 'measured float16 error' | 'float16 worst case m·2⁻¹¹';

/**
 * The updated factor from the inputs as stored by `quantise`, against the one from the exact
 * inputs: the error ‖ΔF'‖max and the bound C·(γ (1/γ for 'exact') + 4(1−γ)/γ²·m³d²)·ε plus the
 * float64 slack, with ε chosen by `epsilon`.
 */
function lemmaCase(
  form: InverseUpdateForm,
  quantise: Quantiser,
  epsilon: EpsilonChoice,
  { inverse, v, gamma }: LemmaInputs,
): { error: number; bound: number } {
  const d = v.length;
  const m = Math.max(maxAbs(inverse), largestDifference(v, new Float64Array(d)));
  const quantisedInverse = matrix(d, d, quantise(inverse.data, m));
  const quantisedV = quantise(v, m);

  const measured = Math.max(
    largestDifference(float16Quantiser(inverse.data, m), inverse.data),
    largestDifference(float16Quantiser(v, m), v),
  );
  expect(measured).toBeLessThanOrEqual(m * FLOAT16_UNIT_ROUNDOFF);
  const eps = epsilon === 'measured float16 error' ? measured : m * FLOAT16_UNIT_ROUNDOFF;
  // The derivation needs P̃ positive semidefinite; the generator guarantees it for float16.
  if (quantise === float16Quantiser) expect(cholesky(quantisedInverse)).not.toBeNull();

  const exact = updateInverseFactor64(inverse, v, form, gamma);
  const fromQuantised = updateInverseFactor64(quantisedInverse, quantisedV, form, gamma);
  const error = maxAbs(combine(1, fromQuantised, -1, exact));

  const K = (1 - gamma) / gamma ** 2;
  const firstTerm = form === 'exact' ? 1 / gamma : gamma;
  const float64Slack = 1e-13 * (firstTerm * m + K * d ** 2 * m ** 4);
  return { error, bound: C * (firstTerm + 4 * K * m ** 3 * d ** 2) * eps + float64Slack };
}

/** The lemma's bound as a property of random inputs; `observe` sees every case's error and bound. */
function lemmaBoundHolds(
  form: InverseUpdateForm,
  quantise: Quantiser,
  epsilon: EpsilonChoice,
  observe: (error: number, bound: number) => void = () => undefined,
): fc.IProperty<[LemmaInputs]> {
  return fc.property(lemmaInputs, (inputs) => {
    const { error, bound } = lemmaCase(form, quantise, epsilon, inputs);
    observe(error, bound);
    return error <= bound;
  });
}

/**
 * Checks the bound for float16 inputs and that it is not vacuous: the largest error/bound seen
 * must exceed 1% (on 4,000 samples it reaches 0.57 and its 90th percentile is 0.07–0.1, so 300
 * runs all staying below 0.01 is practically impossible).
 */
function checkFloat16(form: InverseUpdateForm): void {
  let largestRatio = 0;
  fc.assert(
    lemmaBoundHolds(form, float16Quantiser, 'measured float16 error', (error, bound) => {
      largestRatio = Math.max(largestRatio, error / bound);
    }),
    { numRuns: 300 },
  );
  expect(largestRatio).toBeGreaterThan(0.01);
}

describe('Lemma 3.2: quantisation error of the inverse-factor update', () => {
  it(`float16 inputs: error ≤ ${C.toFixed(4)}·(γ + 4(1−γ)/γ²·m³d²)·ε, eq. 5/6 as printed`, () => {
    checkFloat16('paper');
  });

  it(`float16 inputs: error ≤ ${C.toFixed(4)}·(1/γ + 4(1−γ)/γ²·m³d²)·ε, exact Sherman–Morrison form`, () => {
    checkFloat16('exact');
  });

  it('the same check fails for a uniform 8-bit quantiser over [−m, m], even against float16’s worst-case ε', () => {
    for (const form of ['paper', 'exact'] as const) {
      // fast-check stops at the first counterexample. On 4,000 samples 6% ('paper') and 8%
      // ('exact') of the cases are counterexamples, so 2,000 runs all missing has probability
      // about 0.94²⁰⁰⁰ < 1e-50.
      const result = fc.check(lemmaBoundHolds(form, uniform8BitQuantiser, 'float16 worst case m·2⁻¹¹'), { numRuns: 2000 });
      expect(result.failed, `${form}: no counterexample found`).toBe(true);
      const [counterexample] = result.counterexample ?? [];
      if (counterexample === undefined) throw new Error('fc.check reported a failure without a counterexample');
      const { error, bound } = lemmaCase(form, uniform8BitQuantiser, 'float16 worst case m·2⁻¹¹', counterexample);
      expect(error).toBeGreaterThan(bound);
    }
  });
});
