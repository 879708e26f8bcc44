import {
  type Matrix64,
  blendTowardIdentity64,
  cholesky,
  combine,
  frobeniusNorm,
  fromTensor,
  infNorm,
  matrix,
  maxAbs,
  spdMatrix,
  symmetricEigenvalues,
  toTensor,
} from '@mkor/testing';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';

import {
  type FactorNorm,
  REFERENCE_STABILIZER,
  type StabilizeOptions,
  factorNorm,
  stabilize,
  stabilizeDeferred,
} from './index';

const UNIT_ROUNDOFF = 2 ** -24;
const SUBNORMAL_HALF_SPACING = 2 ** -150;
const NORMS: readonly FactorNorm[] = ['inf', 'max', 'fro'];
const NORMS_64: Record<FactorNorm, (a: Matrix64) => number> = { inf: infNorm, max: maxAbs, fro: frobeniusNorm };

/** Any square matrix, entries of any sign spanning 10^-20 … 10^20 (the Frobenius norm must not overflow). */
const anyMatrix = fc
  .integer({ min: 1, max: 16 })
  .chain((d) =>
    fc.record({
      d: fc.constant(d),
      entries: fc.array(fc.double({ min: -1, max: 1, noNaN: true }), { minLength: d * d, maxLength: d * d }),
      log10Scale: fc.double({ min: -20, max: 20, noNaN: true }),
    }),
  )
  .map(({ d, entries, log10Scale }) => matrix(d, d, entries.map((x) => x * 10 ** log10Scale)));

afterEach(() => {
  vi.restoreAllMocks();
});

describe('factorNorm', () => {
  for (const norm of NORMS) {
    it(`'${norm}' agrees with the float64 norm to float32 rounding`, () => {
      const before = tf.memory().numTensors;
      fc.assert(
        fc.property(anyMatrix, (a) => {
          const tensor = toTensor(a);
          const value = factorNorm(tensor, norm);
          const computed = value.dataSync()[0] as number;
          const reference = NORMS_64[norm](fromTensor(tensor));
          tf.dispose([tensor, value]);
          // 'max' is exact; a sum of d² (or d) nonnegative terms, a square root and a rescale add at
          // most (d² + 4)·u relative error, plus half the subnormal spacing (2⁻¹⁵⁰) where the
          // result is subnormal: there float32 has fewer than 24 bits, so rounding is absolute.
          const tolerance = norm === 'max' ? 0 : (a.rows * a.rows + 4) * UNIT_ROUNDOFF * reference + SUBNORMAL_HALF_SPACING;
          expect(Math.abs(computed - reference)).toBeLessThanOrEqual(tolerance);
        }),
        // The example is a counterexample CI found: a subnormal Frobenius norm.
        { numRuns: 150, examples: [[matrix(2, 2, [0, -2.2483833860091693e-42, 0, 2.1019476964872256e-45])]] },
      );
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('defaults to the induced ∞-norm, gives 0 for the zero matrix and NaN for NaN', () => {
    const before = tf.memory().numTensors;
    const a = tf.tensor2d([1, -2, 3, -4], [2, 2]);
    const zero = tf.zeros([3, 3]) as tf.Tensor2D;
    const withNan = tf.tensor2d([1, Number.NaN, 0, 1], [2, 2]);
    const values = [factorNorm(a), factorNorm(zero, 'fro'), factorNorm(zero, 'inf'), factorNorm(withNan, 'fro')];
    expect(values.map((v) => v.dataSync()[0])).toEqual([7, 0, 0, Number.NaN]);
    tf.dispose([a, zero, withNan, ...values]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it("keeps 'fro' finite where squaring the entries would overflow float32", () => {
    const before = tf.memory().numTensors;
    const large = tf.tensor2d([3e30, 0, 0, 4e30], [2, 2]);
    const value = factorNorm(large, 'fro');
    expect(value.dataSync()[0]).toBeCloseTo(5e30, -25);
    tf.dispose([large, value]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses non-square matrices and unknown norms', () => {
    const wide = tf.zeros([2, 3]) as tf.Tensor2D;
    const square = tf.eye(2) as tf.Tensor2D;
    const before = tf.memory().numTensors;
    expect(() => factorNorm(wide)).toThrow('factorNorm: inverse must be square, got shape [2, 3]');
    expect(() => factorNorm(square, 'spectral' as FactorNorm)).toThrow("factorNorm: norm must be one of 'inf', 'max', 'fro', got spectral");
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([wide, square]);
  });
});

const stabilizerCase = fc.record({
  a: spdMatrix({ maxDim: 12, maxCondition: 1e4, log10Scale: [-2, 3] }),
  epsilon: fc.double({ min: 0.01, max: 100, noNaN: true }),
  zeta: fc.double({ min: 0, max: 1, noNaN: true }),
  norm: fc.constantFrom(...NORMS),
});

describe('stabilize', () => {
  it('blends toward I exactly when the norm exceeds ε (eq. 7/8), agreeing with float64', () => {
    const before = tf.memory().numTensors;
    let fired = 0;
    let kept = 0;
    fc.assert(
      fc.property(stabilizerCase, ({ a, epsilon, zeta, norm }) => {
        const a32 = matrix(a.rows, a.cols, Float32Array.from(a.data));
        const normValue = NORMS_64[norm](a32);
        // Skip the float32-rounding band around the threshold, where the decision may go either way.
        fc.pre(Math.abs(normValue - epsilon) > 1e-5 * epsilon);
        const tensor = toTensor(a);
        const result = stabilize(tensor, { epsilon, zeta, norm });
        const computed = fromTensor(result.inverse);
        tf.dispose([tensor, result.inverse]);
        expect(result.fired).toBe(normValue > epsilon);
        if (result.fired) {
          fired++;
          const reference = blendTowardIdentity64(a32, zeta);
          // Two products and a sum per entry: 3u relative to |ζa| + (1−ζ).
          const scale = frobeniusNorm(combine(zeta, a32, 0, a32)) + (1 - zeta) * Math.sqrt(a.rows);
          expect(frobeniusNorm(combine(1, computed, -1, reference))).toBeLessThanOrEqual(3 * UNIT_ROUNDOFF * scale);
        } else {
          kept++;
          expect(Array.from(computed.data)).toEqual(Array.from(a32.data));
        }
      }),
      { numRuns: 200 },
    );
    expect(fired).toBeGreaterThan(20);
    expect(kept).toBeGreaterThan(20);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('keeps a symmetric positive-definite factor symmetric positive definite, lifting λmin to ≥ 1 − ζ', () => {
    const before = tf.memory().numTensors;
    fc.assert(
      fc.property(spdMatrix({ maxDim: 12, maxCondition: 1e6, log10Scale: [1, 4] }), fc.double({ min: 0, max: 0.9, noNaN: true }), (a, zeta) => {
        const tensor = toTensor(a);
        const result = stabilize(tensor, { epsilon: 1, zeta });
        const computed = fromTensor(result.inverse);
        tf.dispose([tensor, result.inverse]);
        expect(result.fired).toBe(true);
        expect(cholesky(computed)).not.toBeNull();
        // λmin(ζA + (1−ζ)I) = ζλmin(A) + 1 − ζ ≥ 1 − ζ, up to the float32 rounding of the entries
        // (2u per entry of |ζA| + (1−ζ), at most 2u·d·(ζ‖A‖₂ + 1) in the 2-norm).
        const eigenvalues = symmetricEigenvalues(computed);
        const largest = eigenvalues[a.rows - 1] as number;
        expect(eigenvalues[0]).toBeGreaterThanOrEqual(1 - zeta - 2 * UNIT_ROUNDOFF * a.rows * (largest + 1));
      }),
      { numRuns: 60 },
    );
    expect(tf.memory().numTensors).toBe(before);
  });

  it("resets to I in 'reset' mode; REFERENCE_STABILIZER is the authors' max|entry| > 2 rule", () => {
    const before = tf.memory().numTensors;
    const big = tf.tensor2d([1.5, 2.5, 2.5, 1.5], [2, 2]);
    const small = tf.tensor2d([1.5, 1.9, 1.9, 1.5], [2, 2]);
    const reset = stabilize(big, REFERENCE_STABILIZER);
    const untouched = stabilize(small, REFERENCE_STABILIZER);
    expect(REFERENCE_STABILIZER).toEqual({ epsilon: 2, norm: 'max', mode: 'reset' });
    expect(reset.fired).toBe(true);
    expect(Array.from(reset.inverse.dataSync())).toEqual([1, 0, 0, 1]);
    // The ∞-norm of `small` is 3.4 > 2, but the largest entry is 1.9: the reference rule does not fire.
    expect(untouched.fired).toBe(false);
    expect(Array.from(untouched.inverse.dataSync())).toEqual(Array.from(small.dataSync()));
    tf.dispose([big, small, reset.inverse, untouched.inverse]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('always returns a new tensor the caller owns, even when it did not fire', () => {
    const a = tf.tensor2d([0.5, 0.25, 0.25, 0.5], [2, 2]);
    const before = tf.memory().numTensors;
    const result = stabilize(a, { epsilon: 10, zeta: 0.5 });
    expect(result.fired).toBe(false);
    expect(result.inverse).not.toBe(a);
    expect(tf.memory().numTensors).toBe(before + 1);
    result.inverse.dispose();
    expect(a.isDisposed).toBe(false);
    expect(Array.from(a.dataSync())).toEqual([0.5, 0.25, 0.25, 0.5]);
    expect(tf.memory().numTensors).toBe(before);
    a.dispose();
  });

  it('compares in float32: a norm equal to ε after rounding does not fire', () => {
    const before = tf.memory().numTensors;
    const a = tf.tensor2d([0.1, 0, 0, 0.1], [2, 2]);
    const result = stabilize(a, { epsilon: 0.1, zeta: 0.5 });
    const deferred = stabilizeDeferred(a, { epsilon: 0.1, zeta: 0.5 });
    expect(result.fired).toBe(false);
    expect(deferred.fired.dataSync()[0]).toBe(0);
    tf.dispose([a, result.inverse, deferred.inverse, deferred.fired]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('does not fire on NaN (the comparison is false) and returns the factor unchanged', () => {
    const before = tf.memory().numTensors;
    const a = tf.tensor2d([Number.NaN, 0, 0, 1], [2, 2]);
    const result = stabilize(a, { epsilon: 1, zeta: 0.5 });
    expect(result.fired).toBe(false);
    expect(Number.isNaN(result.inverse.dataSync()[0])).toBe(true);
    tf.dispose([a, result.inverse]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses bad ε, ζ, norm, mode, shapes and dtypes with clear errors', () => {
    const square = tf.eye(2) as tf.Tensor2D;
    const wide = tf.zeros([2, 3]) as tf.Tensor2D;
    const integers = tf.tensor2d([1, 0, 0, 1], [2, 2], 'int32');
    const before = tf.memory().numTensors;
    expect(() => stabilize(square, { epsilon: 0, zeta: 0.5 })).toThrow('stabilize: epsilon must be (0, ∞), got 0');
    expect(() => stabilize(square, undefined as unknown as StabilizeOptions)).toThrow(
      'stabilize: epsilon must be (0, ∞), got undefined',
    );
    expect(() => stabilize(square, { epsilon: 1, zeta: 1.5 })).toThrow('stabilize: zeta must be [0, 1], got 1.5');
    expect(() => stabilize(square, { epsilon: 1 } as StabilizeOptions)).toThrow('stabilize: zeta must be [0, 1], got undefined');
    expect(() => stabilize(square, { epsilon: 1, zeta: -0.1, mode: 'reset' })).toThrow('stabilize: zeta must be [0, 1], got -0.1');
    expect(() => stabilize(square, { epsilon: 1, zeta: 0.5, norm: 'l1' as FactorNorm })).toThrow(
      "stabilize: norm must be one of 'inf', 'max', 'fro', got l1",
    );
    expect(() => stabilize(square, { epsilon: 1, zeta: 0.5, mode: 'clip' as 'blend' })).toThrow(
      "stabilize: mode must be one of 'blend', 'reset', got clip",
    );
    expect(() => stabilize(wide, { epsilon: 1, zeta: 0.5 })).toThrow('stabilize: inverse must be square, got shape [2, 3]');
    expect(() => stabilize(integers as tf.Tensor2D, { epsilon: 1, zeta: 0.5 })).toThrow(
      'stabilize: inverse must be a float32 tensor, got dtype int32',
    );
    expect(() => stabilizeDeferred(square, { epsilon: Number.NaN, zeta: 0.5 })).toThrow(
      'stabilizeDeferred: epsilon must be (0, ∞), got NaN',
    );
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([square, wide, integers]);
  });
});

describe('stabilizeDeferred', () => {
  it('matches stabilize bit for bit in both modes, without reading anything back', () => {
    const before = tf.memory().numTensors;
    fc.assert(
      fc.property(stabilizerCase, fc.constantFrom('blend' as const, 'reset' as const), ({ a, epsilon, zeta, norm }, mode) => {
        const tensor = toTensor(a);
        const options: StabilizeOptions = { epsilon, zeta, norm, mode };
        const eager = stabilize(tensor, options);
        const dataSync = vi.spyOn(tf.Tensor.prototype, 'dataSync');
        const data = vi.spyOn(tf.Tensor.prototype, 'data');
        const deferred = stabilizeDeferred(tensor, options);
        expect(dataSync).not.toHaveBeenCalled();
        expect(data).not.toHaveBeenCalled();
        vi.restoreAllMocks();
        expect(deferred.fired.dtype).toBe('bool');
        expect(deferred.fired.shape).toEqual([]);
        expect(deferred.fired.dataSync()[0] === 1).toBe(eager.fired);
        expect(Array.from(deferred.inverse.dataSync())).toEqual(Array.from(eager.inverse.dataSync()));
        tf.dispose([tensor, eager.inverse, deferred.inverse, deferred.fired]);
      }),
      { numRuns: 100 },
    );
    expect(tf.memory().numTensors).toBe(before);
  });

  it('returns new tensors and leaves the input alone', () => {
    const a = tf.tensor2d([3, 0, 0, 3], [2, 2]);
    const before = tf.memory().numTensors;
    const result = stabilizeDeferred(a, { epsilon: 1, zeta: 0.25 });
    expect(tf.memory().numTensors).toBe(before + 2);
    expect(Array.from(result.inverse.dataSync())).toEqual([1.5, 0, 0, 1.5]);
    expect(Array.from(a.dataSync())).toEqual([3, 0, 0, 3]);
    tf.dispose([result.inverse, result.fired]);
    expect(tf.memory().numTensors).toBe(before);
    a.dispose();
  });
});
