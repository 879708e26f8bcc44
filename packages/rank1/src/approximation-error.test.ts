import { countLeakedTensors, matrix, rank1ApproximationError64 } from '@mkor/testing';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { rank1ApproximationError } from './index';

describe('rank1ApproximationError', () => {
  it('matches ‖C − c cᵀ‖_F / ‖C‖_F in float64 on random rows, any mean/spread ratio and scale', () => {
    // The float32 path works on rows normalised to max|x| = 1 and centred before the Gram product,
    // so no cancellation occurs: the Gram entries carry ≈ n·u relative error and the ratio of two
    // norms ≈ 2(n + d)·u ≤ 2·40·6e-8 ≈ 5e-6 absolute (the error lies in [0, 1]). We allow 2e-5.
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 24 }),
        fc.integer({ min: 1, max: 16 }),
        fc.array(fc.double({ min: -1, max: 1, noNaN: true }), { minLength: 24 * 16, maxLength: 24 * 16 }),
        fc.array(fc.double({ min: -1, max: 1, noNaN: true }), { minLength: 16, maxLength: 16 }),
        fc.double({ min: -3, max: 3, noNaN: true }),
        fc.double({ min: -20, max: 20, noNaN: true }),
        (n, d, noise, offset, log10MeanToSpread, log10Scale) => {
          const values = Float32Array.from({ length: n * d }, (_, i) => {
            const mean = (offset[i % d] as number) * 10 ** log10MeanToSpread;
            return (mean + (noise[i] as number)) * 10 ** log10Scale;
          });
          const x = tf.tensor2d(values, [n, d]);
          const expected = rank1ApproximationError64(matrix(n, d, values));
          const { result, leaked } = countLeakedTensors(() => rank1ApproximationError(x));
          expect(leaked).toBe(0);
          expect(result).toBeGreaterThanOrEqual(0);
          expect(result).toBeLessThanOrEqual(1);
          expect(Math.abs(result - expected)).toBeLessThanOrEqual(2e-5);
          x.dispose();
        },
      ),
      { numRuns: 80 },
    );
  });

  it('is 0 for identical or all-zero rows and 1 for rows that cancel', () => {
    const identical = tf.tensor2d([
      [1, -2, 3],
      [1, -2, 3],
    ]);
    const zeros = tf.zeros([4, 3]);
    const cancelling = tf.tensor2d([
      [1, 2],
      [-1, -2],
    ]);
    const before = tf.memory().numTensors;
    expect(rank1ApproximationError(identical)).toBe(0);
    expect(rank1ApproximationError(zeros)).toBe(0);
    expect(rank1ApproximationError(cancelling)).toBeCloseTo(1, 6);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([identical, zeros, cancelling]);
  });

  it('flattens leading axes into rows and does not change with scale (no overflow or underflow)', () => {
    const base = Array.from({ length: 2 * 3 * 4 }, (_, i) => Math.sin(i * 0.7) + 0.5);
    const x3 = tf.tensor3d(base, [2, 3, 4]);
    const x2 = tf.tensor2d(base, [6, 4]);
    const huge = tf.tensor2d(base.map((v) => v * 1e30), [6, 4]);
    const tiny = tf.tensor2d(base.map((v) => v * 1e-30), [6, 4]);
    const ints = tf.tensor2d([1, 2, 3, 5], [2, 2], 'int32');
    const before = tf.memory().numTensors;
    const reference = rank1ApproximationError(x2);
    expect(rank1ApproximationError(x3)).toBeCloseTo(reference, 6);
    expect(rank1ApproximationError(huge)).toBeCloseTo(reference, 5);
    expect(rank1ApproximationError(tiny)).toBeCloseTo(reference, 5);
    expect(rank1ApproximationError(ints)).toBeCloseTo(rank1ApproximationError64(matrix(2, 2, [1, 2, 3, 5])), 6);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x3, x2, huge, tiny, ints]);
  });

  it('refuses non-finite, empty and rank-0 rows without leaking', () => {
    const nan = tf.tensor2d([1, Number.NaN], [1, 2]);
    const inf = tf.tensor2d([1, 2, Number.POSITIVE_INFINITY, 4], [2, 2], 'float32');
    const intsWithCast = tf.tensor1d([1, 2], 'int32');
    const scalar = tf.scalar(1);
    const before = tf.memory().numTensors;
    expect(() => rank1ApproximationError(nan)).toThrow('rank1ApproximationError: rows contains NaN or Inf');
    expect(() => rank1ApproximationError(inf)).toThrow('rank1ApproximationError: rows contains NaN or Inf');
    expect(() => rank1ApproximationError(scalar)).toThrow('rank1ApproximationError: rows must have rank ≥ 1');
    expect(rank1ApproximationError(intsWithCast)).toBe(0);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([nan, inf, intsWithCast, scalar]);
  });
});
