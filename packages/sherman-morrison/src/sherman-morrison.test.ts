import {
  FLOAT32_UNIT_ROUNDOFF,
  type Matrix64,
  combine,
  frobeniusNorm,
  fromTensor,
  identity,
  inverse as inverse64,
  isExactlySymmetric,
  matrix,
  outer,
  scaledVector,
  shermanMorrison64,
  shermanMorrisonAmplification64,
  shermanMorrisonTermSize64,
  spdMatrix,
  symmetricEigenvalues,
  toTensor,
  updateAmplification64,
  updateInverseFactor64,
  updateTermSize64,
} from '@mkor/testing';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';

import {
  DEFAULT_GAMMA,
  type InverseUpdateForm,
  shermanMorrison,
  updateInverseFactor,
  updateInverseFactorRankR,
} from './index';

const FORMS: readonly InverseUpdateForm[] = ['exact', 'paper', 'reference'];

/**
 * Float32 rounding bound for one step: every entry is a short chain of float32 operations on
 * terms of size at most M (the 2-norm of the two combined terms), plus the d-term dot products of
 * `u = Pv` and `vᵀu`; the error is at most about (d + 4)·u·M per entry, so in the Frobenius norm
 * ‖computed − exact‖_F ≤ (d + 4)·u·M·√d·2 with a factor 2 of slack. It is relative to M, not to the
 * result: when the terms cancel (huge v) the result can be far smaller than M.
 */
function stepTolerance(d: number, termSize: number): number {
  return 2 * (d + 4) * Math.sqrt(d) * FLOAT32_UNIT_ROUNDOFF * termSize;
}

/**
 * {@link stepTolerance} when v may lie near the small eigenvectors of an ill-conditioned P: the
 * rounding of `u = Pv` and of `vᵀPv` then reaches the rank-1 term amplified by `A`
 * (`shermanMorrisonAmplification64`: cancellation in the products), so the bound is `(1 + A)`
 * times the plain one. `A < 1` when v lies along P's large eigenvectors, so there the bound at
 * most doubles.
 */
function amplifiedStepTolerance(d: number, termSize: number, amplification: number): number {
  return stepTolerance(d, termSize) * (1 + amplification);
}

function absoluteError(a: Matrix64, b: Matrix64): number {
  return frobeniusNorm(combine(1, a, -1, b));
}

/** Reads `v` as float32 then float64, so references see exactly what the tensors hold. */
function rounded(values: ArrayLike<number>): Float64Array {
  return Float64Array.from(Float32Array.from(values));
}

/** Random SPD inverse factor, vector (any scale, zero included) and γ. */
const updateCase = spdMatrix({ maxDim: 16, maxCondition: 1e6 }).chain((p) =>
  fc.record({
    p: fc.constant(p),
    v: scaledVector(p.rows, -8, 4),
    gamma: fc.double({ min: 1e-3, max: 1 - 1e-3, noNaN: true }),
  }),
);

afterEach(() => {
  vi.restoreAllMocks();
});

describe('shermanMorrison', () => {
  it('agrees with the float64 identity to float32 rounding of terms of size M, for any β > 0, α ≥ 0', () => {
    const before = tf.memory().numTensors;
    const coefficients = fc.record({
      beta: fc.double({ min: 1e-3, max: 1e3, noNaN: true }),
      alpha: fc.oneof(fc.constant(0), fc.double({ min: 1e-3, max: 1e3, noNaN: true })),
    });
    fc.assert(
      fc.property(updateCase, coefficients, ({ p, v }, { beta, alpha }) => {
        const inverse = toTensor(p);
        const vector = tf.tensor1d(Float32Array.from(v));
        const result = shermanMorrison(inverse, vector, { beta, alpha });
        const p32 = fromTensor(inverse);
        const v32 = rounded(v);
        const computed = fromTensor(result);
        tf.dispose([inverse, vector, result]);
        const reference = shermanMorrison64(p32, v32, beta, alpha);
        expect(isExactlySymmetric(computed)).toBe(true);
        expect(absoluteError(computed, reference)).toBeLessThanOrEqual(
          amplifiedStepTolerance(p.rows, shermanMorrisonTermSize64(p32, v32, beta, alpha), shermanMorrisonAmplification64(p32, v32, beta, alpha)),
        );
      }),
      { numRuns: 100 },
    );
    expect(tf.memory().numTensors).toBe(before);
  });

  it('is the inverse of βF + αvvᵀ (float64 Gauss–Jordan, well-conditioned F)', () => {
    const before = tf.memory().numTensors;
    fc.assert(
      fc.property(spdMatrix({ maxDim: 10, maxCondition: 100 }), fc.double({ min: 0.1, max: 10, noNaN: true }), (p, beta) => {
        const v = Float64Array.from({ length: p.rows }, (_, i) => Math.sin(i + 1));
        const inverse = toTensor(p);
        const vector = tf.tensor1d(Float32Array.from(v));
        const result = shermanMorrison(inverse, vector, { beta, alpha: 0.5 });
        const computed = fromTensor(result);
        const p32 = fromTensor(inverse);
        tf.dispose([inverse, vector, result]);
        // (βF + αvvᵀ)⁻¹ with F = (P₃₂)⁻¹ formed and inverted in float64.
        const direct = inverse64(combine(beta, inverse64(p32), 0.5, outer(v, rounded(v))));
        // κ ≤ 100: float32 error ≤ (d + 4)√d·u·M·2, and the float64 inversions add about κ²·1e-16.
        expect(absoluteError(computed, direct)).toBeLessThanOrEqual(
          stepTolerance(p.rows, shermanMorrisonTermSize64(p32, rounded(v), beta, 0.5)),
        );
      }),
      { numRuns: 60 },
    );
    expect(tf.memory().numTensors).toBe(before);
  });

  it('gives F⁻¹/β for α = 0 or v = 0, and keeps a symmetric input exactly symmetric', () => {
    const before = tf.memory().numTensors;
    const inverse = tf.tensor2d([4, 1, 0.5, 1, 3, 0.25, 0.5, 0.25, 2], [3, 3]);
    const v = tf.tensor1d([1, -2, 0.5]);
    const zero = tf.zeros([3]) as tf.Tensor1D;
    const noWeight = shermanMorrison(inverse, v, { beta: 2, alpha: 0 });
    const noVector = shermanMorrison(inverse, zero, { beta: 2, alpha: 0.3 });
    const expected = Array.from(inverse.dataSync(), (x) => x / 2);
    expect(Array.from(noWeight.dataSync())).toEqual(expected);
    expect(Array.from(noVector.dataSync())).toEqual(expected);
    tf.dispose([inverse, v, zero, noWeight, noVector]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('does not dispose or change its inputs', () => {
    const inverse = tf.eye(3) as tf.Tensor2D;
    const v = tf.tensor1d([1, 2, 3]);
    const before = tf.memory().numTensors;
    const result = shermanMorrison(inverse, v, { beta: 0.9, alpha: 0.1 });
    expect(tf.memory().numTensors).toBe(before + 1);
    expect(inverse.isDisposed || v.isDisposed).toBe(false);
    expect(Array.from(inverse.dataSync())).toEqual([1, 0, 0, 0, 1, 0, 0, 0, 1]);
    expect(Array.from(v.dataSync())).toEqual([1, 2, 3]);
    tf.dispose([inverse, v, result]);
  });

  it('reads nothing back when checkFinite is off (the coefficient stays a tensor)', () => {
    const inverse = tf.eye(4) as tf.Tensor2D;
    const v = tf.tensor1d([1, 2, 3, 4]);
    const before = tf.memory().numTensors;
    const dataSync = vi.spyOn(tf.Tensor.prototype, 'dataSync');
    const data = vi.spyOn(tf.Tensor.prototype, 'data');
    const result = shermanMorrison(inverse, v, { beta: 0.9, alpha: 0.1, checkFinite: false });
    const updated = updateInverseFactor(inverse, v, { checkFinite: false });
    expect(dataSync).not.toHaveBeenCalled();
    expect(data).not.toHaveBeenCalled();
    tf.dispose([result, updated]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([inverse, v]);
  });

  it('refuses bad shapes, dtypes, coefficients and non-finite inputs with clear errors', () => {
    const square = tf.eye(3) as tf.Tensor2D;
    const wide = tf.zeros([3, 2]) as tf.Tensor2D;
    const v = tf.tensor1d([1, 2, 3]);
    const short = tf.tensor1d([1, 2]);
    const nan = tf.tensor1d([1, Number.NaN, 3]);
    const infinite = tf.tensor2d([1, 0, 0, 0, Number.POSITIVE_INFINITY, 0, 0, 0, 1], [3, 3]);
    const integers = tf.tensor1d([1, 2, 3], 'int32');
    const before = tf.memory().numTensors;
    const ok = { beta: 0.9, alpha: 0.1 };
    expect(() => shermanMorrison(wide, v, ok)).toThrow('shermanMorrison: inverse must be square, got shape [3, 2]');
    expect(() => shermanMorrison(square, short, ok)).toThrow('shermanMorrison: v must have length 3, got shape [2]');
    expect(() => shermanMorrison(square, integers as tf.Tensor1D, ok)).toThrow(
      'shermanMorrison: v must be a float32 tensor, got dtype int32',
    );
    expect(() => shermanMorrison(square, v, { beta: 0, alpha: 0.1 })).toThrow(/shermanMorrison: beta must be \[1\.17549\d*e-38, ∞\), got 0/);
    expect(() => shermanMorrison(square, v, { beta: 1, alpha: -0.1 })).toThrow('shermanMorrison: alpha must be [0, ∞), got -0.1');
    expect(() => shermanMorrison(square, v, { beta: Number.NaN, alpha: 0 })).toThrow(/beta must be/);
    expect(() => shermanMorrison(square, nan, ok)).toThrow('shermanMorrison: v contains NaN or Inf');
    expect(() => shermanMorrison(infinite, v, ok)).toThrow('shermanMorrison: inverse contains NaN or Inf');
    const unchecked = shermanMorrison(square, nan, { ...ok, checkFinite: false });
    expect(unchecked.shape).toEqual([3, 3]);
    unchecked.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([square, wide, v, short, nan, infinite, integers]);
  });
});

describe('updateInverseFactor', () => {
  for (const form of FORMS) {
    it(`'${form}' agrees with its float64 reference to float32 rounding of terms of size M`, () => {
      const before = tf.memory().numTensors;
      fc.assert(
        fc.property(updateCase, ({ p, v, gamma }) => {
          const inverse = toTensor(p);
          const vector = tf.tensor1d(Float32Array.from(v));
          const result = updateInverseFactor(inverse, vector, { form, gamma });
          const p32 = fromTensor(inverse);
          const computed = fromTensor(result);
          tf.dispose([inverse, vector, result]);
          const reference = updateInverseFactor64(p32, rounded(v), form, gamma);
          expect(isExactlySymmetric(computed)).toBe(true);
          // The paper form's coefficient has one more rounded product: same bound, same slack.
          expect(absoluteError(computed, reference)).toBeLessThanOrEqual(
            amplifiedStepTolerance(p.rows, updateTermSize64(p32, rounded(v), form, gamma), updateAmplification64(p32, rounded(v), form, gamma)),
          );
        }),
        { numRuns: 100 },
      );
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it("'exact' is the inverse of the factor momentum γF + (1−γ)vvᵀ (float64 Gauss–Jordan, κ ≤ 100)", () => {
    const before = tf.memory().numTensors;
    fc.assert(
      fc.property(spdMatrix({ maxDim: 10, maxCondition: 100 }), fc.double({ min: 0.05, max: 0.99, noNaN: true }), (p, gamma) => {
        const v = rounded(Array.from({ length: p.rows }, (_, i) => Math.cos(3 * i)));
        const inverse = toTensor(p);
        const vector = tf.tensor1d(Float32Array.from(v));
        const result = updateInverseFactor(inverse, vector, { form: 'exact', gamma });
        const p32 = fromTensor(inverse);
        const computed = fromTensor(result);
        tf.dispose([inverse, vector, result]);
        const direct = inverse64(combine(gamma, inverse64(p32), 1 - gamma, outer(v, v)));
        expect(absoluteError(computed, direct)).toBeLessThanOrEqual(
          stepTolerance(p.rows, updateTermSize64(p32, v, 'exact', gamma)),
        );
      }),
      { numRuns: 60 },
    );
    expect(tf.memory().numTensors).toBe(before);
  });

  it('defaults to the exact form with γ = 0.95; the reference form ignores γ', () => {
    const before = tf.memory().numTensors;
    const inverse = tf.tensor2d([2, 0.5, 0.5, 1], [2, 2]);
    const v = tf.tensor1d([0.3, -0.7]);
    const byDefault = updateInverseFactor(inverse, v);
    const explicit = updateInverseFactor(inverse, v, { form: 'exact', gamma: DEFAULT_GAMMA });
    expect(DEFAULT_GAMMA).toBe(0.95);
    expect(Array.from(byDefault.dataSync())).toEqual(Array.from(explicit.dataSync()));
    const referenceA = updateInverseFactor(inverse, v, { form: 'reference', gamma: 0.1 });
    const referenceB = updateInverseFactor(inverse, v, { form: 'reference', gamma: 0.9 });
    expect(Array.from(referenceA.dataSync())).toEqual(Array.from(referenceB.dataSync()));
    tf.dispose([inverse, v, byDefault, explicit, referenceA, referenceB]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it("'exact' with v = 0 divides by γ: the growth γ⁻ᵗ the stabiliser is for", () => {
    const before = tf.memory().numTensors;
    const inverse = tf.tensor2d([1, 0.25, 0.25, 1], [2, 2]);
    const zero = tf.zeros([2]) as tf.Tensor1D;
    const result = updateInverseFactor(inverse, zero, { gamma: 0.5 });
    expect(Array.from(result.dataSync())).toEqual([2, 0.5, 0.5, 2]);
    tf.dispose([inverse, zero, result]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('stays finite for a huge finite v (vᵀF⁻¹v beyond float32) and matches float64 in every form', () => {
    // Before v was scaled, v = 1e20 gave an all-NaN factor (Inf/Inf) with checkFinite on.
    const before = tf.memory().numTensors;
    const start = matrix(3, 3, [2, 0.5, 0.25, 0.5, 1.5, 0.1, 0.25, 0.1, 1]);
    const inverse = toTensor(start);
    for (const entries of [[1e20, 1e20, 1e20], [1e20, 1, -2], [3e38, -3e38, 1e-30], [1e-30, 0, 2e-38]]) {
      const v = tf.tensor1d(entries);
      const v64 = Float64Array.from(v.dataSync());
      for (const form of ['exact', 'paper', 'reference'] as const) {
        const result = updateInverseFactor(inverse, v, { form, gamma: 0.9 });
        const got = fromTensor(result);
        const expected = updateInverseFactor64(start, v64, form, 0.9);
        const size = Math.max(...Array.from(expected.data, Math.abs), 1);
        // Terms of size ≈ |F⁻¹|/γ², a few roundings each.
        for (let i = 0; i < 9; i++) expect(Math.abs(got.data[i]! - expected.data[i]!), `${form} ${entries}`).toBeLessThan(64 * FLOAT32_UNIT_ROUNDOFF * size * 10);
        result.dispose();
      }
      v.dispose();
    }
    inverse.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses a result beyond float32 and a β whose reciprocal is, with clear errors', () => {
    const before = tf.memory().numTensors;
    const inverse = tf.tensor2d([1e38, 0, 0, 1e38], [2, 2]);
    const v = tf.tensor1d([1, 1]);
    const zero = tf.zeros([2]) as tf.Tensor1D;
    // (1/γ)·F⁻¹ with F⁻¹ = 1e38 I and γ = 0.1 overflows float32: refused, not returned as Inf.
    expect(() => updateInverseFactor(inverse, zero, { gamma: 0.1 })).toThrow(/updateInverseFactor: the updated inverse is not representable in float32/);
    expect(() => shermanMorrison(inverse, v, { beta: 1e-45, alpha: 1 })).toThrow(/shermanMorrison: beta must be \[1\.17549\d*e-38, ∞\), got 1e-45/);
    tf.dispose([inverse, v, zero]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses bad shapes, γ outside (0, 1), unknown forms and non-finite inputs', () => {
    const square = tf.eye(2) as tf.Tensor2D;
    const v = tf.tensor1d([1, 2]);
    const long = tf.tensor1d([1, 2, 3]);
    const nan = tf.tensor2d([1, Number.NaN, Number.NaN, 1], [2, 2]);
    const before = tf.memory().numTensors;
    expect(() => updateInverseFactor(square, long)).toThrow('updateInverseFactor: v must have length 2, got shape [3]');
    expect(() => updateInverseFactor(square, v, { gamma: 1 })).toThrow('updateInverseFactor: gamma must be (0, 1), got 1');
    expect(() => updateInverseFactor(square, v, { gamma: 0 })).toThrow('updateInverseFactor: gamma must be (0, 1), got 0');
    expect(() => updateInverseFactor(square, v, { form: 'kfac' as InverseUpdateForm })).toThrow(
      "updateInverseFactor: form must be one of 'exact', 'paper', 'reference', got kfac",
    );
    expect(() => updateInverseFactor(nan, v)).toThrow('updateInverseFactor: inverse contains NaN or Inf');
    expect(() => updateInverseFactor(v as unknown as tf.Tensor2D, v)).toThrow(
      'updateInverseFactor: inverse must have rank 2, got shape [2]',
    );
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([square, v, long, nan]);
  });
});

describe('updateInverseFactorRankR', () => {
  /** The rank-r rule in float64: γ on the first vector, β = 1 after; 'reference' blends once. */
  function rankR64(p: Matrix64, rows: readonly Float64Array[], form: InverseUpdateForm, gamma: number): Matrix64 {
    if (form === 'reference') {
      return rows.reduce((current, v) => shermanMorrison64(current, v, 1, 1), combine(0.95, p, 0.05, identity(p.rows)));
    }
    return rows.reduce((current, v, i) => {
      const beta = i === 0 ? gamma : 1;
      if (form === 'exact') return shermanMorrison64(current, v, beta, 1 - gamma);
      // The printed form with (β, α): βP + α/(β²(1 + βα·vᵀPv))·PvvᵀP.
      const u = Array.from({ length: p.rows }, (_, k) => v.reduce((s, x, j) => s + current.data[k * p.rows + j]! * x, 0));
      const s = u.reduce((acc, x, k) => acc + x * v[k]!, 0);
      const alpha = 1 - gamma;
      return combine(beta, current, alpha / (beta * beta * (1 + beta * alpha * s)), outer(u, u));
    }, p);
  }

  const rankCase = spdMatrix({ maxDim: 10, maxCondition: 100 }).chain((p) =>
    fc.record({
      p: fc.constant(p),
      rows: fc.array(scaledVector(p.rows, -3, 1), { minLength: 1, maxLength: 4 }),
      gamma: fc.double({ min: 0.5, max: 0.99, noNaN: true }),
    }),
  );

  for (const form of FORMS) {
    it(`'${form}' equals r successive float64 steps (relative error ≤ 2e-4 for κ ≤ 100, |v| ≤ 10)`, () => {
      const before = tf.memory().numTensors;
      fc.assert(
        fc.property(rankCase, ({ p, rows, gamma }) => {
          const inverse = toTensor(p);
          const vectors = tf.tensor2d(rows.map((v) => Array.from(Float32Array.from(v))));
          const result = updateInverseFactorRankR(inverse, vectors, { form, gamma });
          const p32 = fromTensor(inverse);
          const computed = fromTensor(result);
          tf.dispose([inverse, vectors, result]);
          const reference = rankR64(p32, rows.map(rounded), form, gamma);
          expect(isExactlySymmetric(computed)).toBe(true);
          // Up to 4 steps of (d + 4)√d·u·M each on factors of condition ≤ ~1e4: 2e-4 relative.
          expect(absoluteError(computed, reference)).toBeLessThanOrEqual(2e-4 * frobeniusNorm(reference));
        }),
        { numRuns: 40 },
      );
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it("'exact' is (γF + (1−γ)Σᵢvᵢvᵢᵀ)⁻¹ and one row equals updateInverseFactor bit for bit", () => {
    const before = tf.memory().numTensors;
    const p = matrix(3, 3, [2, 0.5, 0, 0.5, 1, 0.25, 0, 0.25, 1.5]);
    const rows = [rounded([0.5, -1, 2]), rounded([1, 1, -0.5]), rounded([0.1, 0.2, 0.3])];
    const inverse = toTensor(p);
    const vectors = tf.tensor2d(rows.map((v) => Array.from(v)));
    const result = updateInverseFactorRankR(inverse, vectors, { gamma: 0.9 });
    const computed = fromTensor(result);
    const covariance = rows.reduce((sum, v) => combine(1, sum, 1, outer(v, v)), matrix(3, 3));
    const direct = inverse64(combine(0.9, inverse64(fromTensor(inverse)), 0.1, covariance));
    expect(absoluteError(computed, direct)).toBeLessThan(1e-5 * frobeniusNorm(direct));
    const oneRow = tf.slice(vectors, [0, 0], [1, 3]) as tf.Tensor2D;
    const first = tf.reshape(oneRow, [3]) as tf.Tensor1D;
    for (const form of FORMS) {
      const viaRank = updateInverseFactorRankR(inverse, oneRow, { form, gamma: 0.8 });
      const viaOne = updateInverseFactor(inverse, first, { form, gamma: 0.8 });
      expect(Array.from(viaRank.dataSync())).toEqual(Array.from(viaOne.dataSync()));
      tf.dispose([viaRank, viaOne]);
    }
    tf.dispose([inverse, vectors, result, oneRow, first]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('keeps positive definiteness over r steps inside the envelope (eigenvalues checked in float64)', () => {
    const before = tf.memory().numTensors;
    const inverse = tf.eye(4) as tf.Tensor2D;
    const vectors = tf.tensor2d([
      [1, 0, 0, 0],
      [0, 2, 0, 0],
      [1, 1, 1, 1],
    ]);
    const result = updateInverseFactorRankR(inverse, vectors, { gamma: 0.95 });
    expect(symmetricEigenvalues(fromTensor(result))[0]).toBeGreaterThan(0);
    tf.dispose([inverse, vectors, result]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses an empty or mismatched set of vectors', () => {
    const square = tf.eye(3) as tf.Tensor2D;
    const empty = tf.zeros([0, 3]) as tf.Tensor2D;
    const mismatched = tf.zeros([2, 4]) as tf.Tensor2D;
    const flat = tf.zeros([3]);
    const before = tf.memory().numTensors;
    expect(() => updateInverseFactorRankR(square, empty)).toThrow(
      'updateInverseFactorRankR: vectors must have shape [r, 3] with r ≥ 1, got [0, 3]',
    );
    expect(() => updateInverseFactorRankR(square, mismatched)).toThrow('got [2, 4]');
    expect(() => updateInverseFactorRankR(square, flat as unknown as tf.Tensor2D)).toThrow(
      'updateInverseFactorRankR: vectors must have rank 2, got shape [3]',
    );
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([square, empty, mismatched, flat]);
  });
});
