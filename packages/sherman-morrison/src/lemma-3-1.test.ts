/**
 * Lemma 3.1 (positive definiteness of the updated inverse factors) for the float32 tensor code,
 * checked in float64. In exact arithmetic every form keeps a symmetric positive-definite F⁻¹
 * positive definite for any v and γ ∈ (0, 1). In float32 the result is the difference (or sum)
 * of two terms of size M, computed with an absolute error of order (d + 4)·u·M (u = 2⁻²⁴: about d
 * roundings in the products Pv and vᵀPv, a few more in the elementwise steps), so it stays
 * positive definite when its smallest eigenvalue exceeds that:
 *
 *     envelope ratio  ρ = λmin(exact result) / ((d + 4)·u·M) ≥ 1.
 *
 * The tests below check that ρ ≥ 1 implies a positive-definite, exactly symmetric, finite float32
 * result (failures were only seen at ρ < 0.29, a 3.5-fold margin), show concrete failures below it
 * for each form, and run 200-step sequences with the stabiliser in the loop, both against the
 * per-step criterion and in input regimes proven to stay inside it.
 */
import { stabilize, type StabilizeOptions } from '@mkor/norm-stabilizer';
import {
  type Matrix64,
  isPositiveDefinite,
  dot,
  fromSpectrum,
  fromTensor,
  identity,
  isExactlySymmetric,
  matrix,
  orthogonalFrom,
  scaledVector,
  spdMatrix,
  symmetricEigenvalues,
  toTensor,
  updateEnvelopeRatio64,
  updateRoundingAllowance64,
  updateInverseFactor64,
} from '@mkor/testing';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { type InverseUpdateForm, updateInverseFactor } from './index';

/** Runs one update on float32 copies of the inputs; returns inputs and result as float64. */
function updateOnce(
  inverse64: Matrix64,
  vector: ArrayLike<number>,
  form: InverseUpdateForm,
  gamma: number,
): { inverse: Matrix64; v: Float64Array; result: Matrix64 } {
  const inverse = toTensor(inverse64);
  const v = tf.tensor1d(Float32Array.from(vector));
  const result = updateInverseFactor(inverse, v, { form, gamma });
  const read = { inverse: fromTensor(inverse), v: Float64Array.from(v.dataSync()), result: fromTensor(result) };
  tf.dispose([inverse, v, result]);
  return read;
}

describe('float64 eigenvalues used by these tests', () => {
  it('recover the spectrum of Q·diag(λ)·Qᵀ to 1e-12 relative', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 16 }).chain((d) =>
          fc.record({
            seed: fc.array(fc.double({ min: -1, max: 1, noNaN: true }), { minLength: d * d, maxLength: d * d }),
            spectrum: fc.array(fc.double({ min: 1e-6, max: 1e3, noNaN: true }), { minLength: d, maxLength: d }),
          }),
        ),
        ({ seed, spectrum }) => {
          const d = spectrum.length;
          const a = fromSpectrum(orthogonalFrom(matrix(d, d, seed)), spectrum);
          const computed = symmetricEigenvalues(a);
          const expected = Float64Array.from(spectrum).sort();
          const largest = expected[d - 1] as number;
          computed.forEach((x, i) => expect(Math.abs(x - (expected[i] as number))).toBeLessThanOrEqual(1e-12 * largest));
        },
      ),
      { numRuns: 50 },
    );
  });
});

const gammaArbitrary = fc.double({ min: 1e-3, max: 1 - 1e-3, noNaN: true });
const singleStepCase = spdMatrix({ maxDim: 16, maxCondition: 1e6 }).chain((inverse) =>
  fc.record({ inverse: fc.constant(inverse), v: scaledVector(inverse.rows, -8, 4), gamma: gammaArbitrary }),
);

describe('Lemma 3.1 — one update', () => {
  for (const form of ['exact', 'reference', 'paper'] as const) {
    it(`'${form}': exactly symmetric and finite always, positive definite whenever ρ ≥ 1`, () => {
      const before = tf.memory().numTensors;
      let inside = 0;
      let runs = 0;
      fc.assert(
        fc.property(singleStepCase, ({ inverse: inverse64, v: vector, gamma }) => {
          const { inverse, v, result } = updateOnce(inverse64, vector, form, gamma);
          // The lemma's premise is about the float32 input; rounding a κ ≤ 1e6 matrix keeps it.
          fc.pre(isPositiveDefinite(inverse));
          runs++;
          expect(isExactlySymmetric(result)).toBe(true);
          expect(result.data.every(Number.isFinite)).toBe(true);
          if (updateEnvelopeRatio64(inverse, v, form, gamma) >= 1) {
            inside++;
            expect(isPositiveDefinite(result)).toBe(true);
          }
        }),
        { numRuns: 150 },
      );
      // The criterion is not vacuous: most random cases, huge vectors included, satisfy it.
      expect(inside).toBeGreaterThan(runs / 2);
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  // Concrete failures below the envelope; the same bits come out on the wasm and cpu backends.
  const counterexamples: { form: InverseUpdateForm; inverse: number[]; v: number[]; gamma: number; why: string }[] = [
    {
      form: 'exact',
      inverse: [2, 1, 1, 2],
      v: [1e4, 3e3],
      gamma: 0.5,
      why: 'a huge v: (1/β)(P − α·uuᵀ/(β + αs)) cancels to λmin ≈ 1.8e-8, below the rounding of terms of size ≈ 6',
    },
    {
      form: 'reference',
      inverse: [1, 0, 0, 1],
      v: [12345, 1],
      gamma: 0.95,
      why: 'the same cancellation in J − (Jv)(Jv)ᵀ/(1 + vᵀJv): λmin ≈ 6e-9 against terms of size ≈ 1',
    },
    {
      form: 'paper',
      inverse: [1, 0, 0, 1],
      v: [5, 1000],
      gamma: 1e-4,
      why: 'a tiny γ: γP (λmin ≈ 1e-4) plus a term of size ≈ 1e12 whose rounding swamps it',
    },
  ];
  for (const { form, inverse: entries, v: vector, gamma, why } of counterexamples) {
    it(`'${form}' fails in float32 below the envelope: ${why}`, () => {
      const before = tf.memory().numTensors;
      const { inverse, v, result } = updateOnce(matrix(2, 2, entries), vector, form, gamma);
      expect(isPositiveDefinite(inverse)).toBe(true);
      // In exact arithmetic the lemma holds: the float64 update of the same inputs is SPD ...
      expect(isPositiveDefinite(updateInverseFactor64(inverse, v, form, gamma))).toBe(true);
      // ... but the inputs are outside the float32 envelope and the float32 result is indefinite.
      expect(updateEnvelopeRatio64(inverse, v, form, gamma)).toBeLessThan(1);
      expect(isExactlySymmetric(result)).toBe(true);
      expect(symmetricEigenvalues(result)[0]).toBeLessThan(0);
      expect(isPositiveDefinite(result)).toBe(false);
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});

/** The stabiliser options drawn for the sequences: any mode, norm, threshold and ζ. */
const stabilizerArbitrary: fc.Arbitrary<StabilizeOptions> = fc.record({
  epsilon: fc.double({ min: 1, max: 100, noNaN: true }),
  zeta: fc.double({ min: 0, max: 1, noNaN: true }),
  norm: fc.constantFrom('inf' as const, 'max' as const, 'fro' as const),
  mode: fc.constantFrom('blend' as const, 'reset' as const),
});

interface SequenceReport {
  /** Steps run (the sequence stops after the first non-positive-definite factor). */
  readonly steps: number;
  /** Steps whose inputs were inside the envelope (ρ ≥ 1). */
  readonly inside: number;
  /** The first step whose float32 result was not positive definite, if any. */
  readonly failure?: { readonly step: number; readonly ratio: number };
}

/**
 * Runs `stabilize` then `updateInverseFactor` over the vectors, as MKOR does, checking every
 * intermediate factor in float64: exactly symmetric always, and positive definite when its step
 * was inside the envelope; records the first failure.
 */
function runSequence(
  start: Matrix64,
  vectors: readonly Float64Array[],
  form: InverseUpdateForm,
  gamma: number,
  stabilizer: StabilizeOptions,
): SequenceReport {
  let current = toTensor(start);
  let inside = 0;
  let steps = 0;
  try {
    for (const vector of vectors) {
      steps++;
      const stabilized = stabilize(current, stabilizer).inverse;
      const v = tf.tensor1d(Float32Array.from(vector));
      const next = updateInverseFactor(stabilized, v, { form, gamma, checkFinite: false });
      const stabilized64 = fromTensor(stabilized);
      const ratio = updateEnvelopeRatio64(stabilized64, Float64Array.from(v.dataSync()), form, gamma);
      tf.dispose([current, stabilized, v]);
      current = next;
      const result = fromTensor(next);
      expect(isExactlySymmetric(result)).toBe(true);
      if (ratio >= 1) inside++;
      if (!isPositiveDefinite(result)) return { steps, inside, failure: { step: steps, ratio } };
    }
    return { steps, inside };
  } finally {
    current.dispose();
  }
}

describe('Lemma 3.1 — 200 updates with the stabiliser in the loop', () => {
  const sequenceCase = (maxLog10: number) =>
    spdMatrix({ maxDim: 8, maxCondition: 1e6 }).chain((start) =>
      fc.record({
        start: fc.constant(start),
        vectors: fc.array(scaledVector(start.rows, -8, maxLog10), { minLength: 200, maxLength: 200 }),
        gamma: fc.double({ min: 0.05, max: 0.99, noNaN: true }),
        stabilizer: stabilizerArbitrary,
      }),
    );

  for (const form of ['exact', 'reference'] as const) {
    it(`'${form}': every step inside the envelope keeps the factor positive definite`, () => {
      const before = tf.memory().numTensors;
      let steps = 0;
      let inside = 0;
      fc.assert(
        fc.property(sequenceCase(4), ({ start, vectors, gamma, stabilizer }) => {
          const report = runSequence(start, vectors, form, gamma, stabilizer);
          steps += report.steps;
          inside += report.inside;
          // A failure may only happen on a step whose inputs were outside the envelope.
          if (report.failure !== undefined) expect(report.failure.ratio).toBeLessThan(1);
        }),
        { numRuns: 12 },
      );
      // Not vacuous: most steps run were inside the envelope.
      expect(inside).toBeGreaterThan(steps / 2);
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it("'reference' with the authors' clamp |vᵢ| ≤ 100 stays positive definite for 200 steps (d ≤ 8, ‖F⁻¹₀‖ ≤ 10)", () => {
    // J = 0.95P + 0.05I has λmin(J) ≥ 0.05, so λmin(result) ≥ 1/(20 + ‖v‖²) and M ≤ 2‖J‖ ≤ 19.1:
    // ρ ≥ 1/(2·8·u·9.55·(20 + 8·10⁴)) ≈ 1.4 at every step, whatever the stabiliser does.
    const before = tf.memory().numTensors;
    fc.assert(
      fc.property(sequenceCase(4), ({ start, vectors, gamma, stabilizer }) => {
        const clamped = vectors.map((v) => v.map((x) => Math.min(100, Math.max(-100, x))));
        const report = runSequence(start, clamped, 'reference', gamma, stabilizer);
        expect(report.failure).toBeUndefined();
        expect(report.inside).toBe(200);
      }),
      { numRuns: 10 },
    );
    expect(tf.memory().numTensors).toBe(before);
  });

  it("'exact' stays positive definite for 200 steps inside its proven regime (ζ < γ, ‖v‖² ≤ γ(1/(2(d + 4)uN) − Λ₀))", () => {
    // With the stabiliser before each update, ‖P̂‖₂ ≤ N = max(c·ε, ‖P₀‖₂, (1−ζ)/(1−ζ/γ), 1)
    // (c = d for the 'max' norm, 1 otherwise; the blend needs ζ < γ), and
    // 1/λmin(P̂) ≤ Λ = max(Λ₀, V²), Λ₀ = max(1, 1/λmin(P₀)), V = max‖v‖. Then
    // ρ ≥ 1/(2(d + 4)u·N·(Λ + ((1−γ)/γ)V²)) ≥ 1 when Λ₀ + V²/γ ≤ 1/(2(d + 4)uN): vectors are scaled to that.
    const before = tf.memory().numTensors;
    const regime = spdMatrix({ maxDim: 8, maxCondition: 100 }).chain((start) =>
      fc
        .record({
          start: fc.constant(start),
          vectors: fc.array(scaledVector(start.rows, -8, 4), { minLength: 200, maxLength: 200 }),
          gamma: fc.double({ min: 0.05, max: 0.99, noNaN: true }),
          zetaFraction: fc.double({ min: 0, max: 0.95, noNaN: true }),
          stabilizer: stabilizerArbitrary,
        })
        .map(({ zetaFraction, stabilizer, gamma, ...rest }) => ({
          ...rest,
          gamma,
          stabilizer: { ...stabilizer, epsilon: Math.min(stabilizer.epsilon, 10), zeta: zetaFraction * gamma },
        })),
    );
    fc.assert(
      fc.property(regime, ({ start, vectors, gamma, stabilizer }) => {
        const d = start.rows;
        const eigenvalues = symmetricEigenvalues(fromTensorRounded(start));
        const zeta = stabilizer.zeta ?? 0;
        const normFactor = stabilizer.norm === 'max' ? d : 1;
        const bound = Math.max(
          normFactor * stabilizer.epsilon,
          eigenvalues[d - 1] as number,
          stabilizer.mode === 'blend' ? (1 - zeta) / (1 - zeta / gamma) : 1,
          1,
        );
        const lowerInverse = Math.max(1, 1 / (eigenvalues[0] as number));
        const budget = gamma * (1 / (2 * updateRoundingAllowance64(d, bound)) - lowerInverse);
        expect(budget).toBeGreaterThan(0);
        const largest = Math.sqrt(budget);
        const scaled = vectors.map((v) => {
          const norm = Math.sqrt(dot(v, v));
          return norm > largest ? v.map((x) => (x * largest) / norm) : v;
        });
        const report = runSequence(start, scaled, 'exact', gamma, stabilizer);
        expect(report.failure).toBeUndefined();
      }),
      { numRuns: 10 },
    );
    expect(tf.memory().numTensors).toBe(before);
  });

  it("'exact' with a blend ζ ≥ γ cannot hold the 1/γ growth: v = 0 overflows to Inf within 200 steps", () => {
    // Each step maps ‖P‖ to (ζ‖P‖ + 1 − ζ)/γ once the stabiliser fires: geometric growth at rate ζ/γ.
    const before = tf.memory().numTensors;
    const zero = new Float64Array(2);
    let current = toTensor(identity(2));
    let firstNonFinite = -1;
    for (let step = 1; step <= 200 && firstNonFinite < 0; step++) {
      const stabilized = stabilize(current, { epsilon: 10, zeta: 0.5, norm: 'inf' }).inverse;
      const v = tf.tensor1d(Float32Array.from(zero));
      const next = updateInverseFactor(stabilized, v, { form: 'exact', gamma: 0.25, checkFinite: false });
      tf.dispose([current, stabilized, v]);
      current = next;
      if (!fromTensor(current).data.every(Number.isFinite)) firstNonFinite = step;
    }
    current.dispose();
    // (0.5/0.25)^t passes float32's 3.4e38 after about 128 steps.
    expect(firstNonFinite).toBeGreaterThan(100);
    expect(firstNonFinite).toBeLessThanOrEqual(200);
    expect(tf.memory().numTensors).toBe(before);
  });

  it("'paper' shrinks like γᵗ for small v, which the stabiliser never sees: the factor underflows to 0", () => {
    // γP + (tiny)·uuᵀ: after 200 steps at γ = 0.5 the factor is 0.5²⁰⁰ ≈ 6e-61 < 1.4e-45, i.e. zero.
    const before = tf.memory().numTensors;
    const tiny = Float64Array.from([1e-8, -1e-8]);
    let current = toTensor(identity(2));
    for (let step = 1; step <= 200; step++) {
      const stabilized = stabilize(current, { epsilon: 10, zeta: 0.1, norm: 'inf' }).inverse;
      const v = tf.tensor1d(Float32Array.from(tiny));
      const next = updateInverseFactor(stabilized, v, { form: 'paper', gamma: 0.5, checkFinite: false });
      tf.dispose([current, stabilized, v]);
      current = next;
    }
    const result = fromTensor(current);
    current.dispose();
    expect(isPositiveDefinite(updateInverseFactor64(identity(2), tiny, 'paper', 0.5))).toBe(true);
    expect(result.data.every((x) => x === 0)).toBe(true);
    expect(isPositiveDefinite(result)).toBe(false);
    expect(tf.memory().numTensors).toBe(before);
  });
});

/** A float64 matrix rounded to float32, without tensors. */
function fromTensorRounded(a: Matrix64): Matrix64 {
  return matrix(a.rows, a.cols, Float32Array.from(a.data));
}
