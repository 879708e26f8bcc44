import { type Matrix64, cholesky, countLeakedTensors, matrix, rowMean64, secondMoment64 } from '@mkor/testing';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { type Rank1Options, blockSizes, rank1Vector, rankRVectors } from './index';

const UNIT_ROUNDOFF = 2 ** -24;

/** The rows of `x` (every axis but the last flattened) as a float64 matrix of its float32 values. */
function rowsOf(x: tf.Tensor): Matrix64 {
  const d = x.shape[x.rank - 1] as number;
  return matrix(x.size / d, d, x.dataSync());
}

/** The float64 reference of rank1Vector: mean, × n for 'sum', clamp, then a 1 appended. */
function rank1Vector64(rows: Matrix64, options: Rank1Options): Float64Array {
  let v = Array.from(rowMean64(rows));
  if (options.scale === 'sum') v = v.map((x) => x * rows.rows);
  if (options.clamp !== undefined) {
    const c = options.clamp;
    v = v.map((x) => Math.min(c, Math.max(-c, x)));
  }
  if (options.appendOne) v.push(1);
  return Float64Array.from(v);
}

/** Random shapes of rank 1–4 (last axis 1–6) with entries of magnitude up to 10^k. */
const rowsTensorSpec = fc
  .record({
    leading: fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 0, maxLength: 3 }),
    d: fc.integer({ min: 1, max: 6 }),
    log10Scale: fc.double({ min: -12, max: 12, noNaN: true }),
  })
  .chain(({ leading, d, log10Scale }) => {
    const shape = [...leading, d];
    const size = shape.reduce((a, b) => a * b, 1);
    return fc.record({
      shape: fc.constant(shape),
      values: fc.array(fc.double({ min: -1, max: 1, noNaN: true }), { minLength: size, maxLength: size }).map((v) =>
        Float32Array.from(v, (x) => x * 10 ** log10Scale),
      ),
    });
  });

const optionsArbitrary: fc.Arbitrary<Rank1Options> = fc.record(
  {
    appendOne: fc.boolean(),
    scale: fc.constantFrom('mean' as const, 'sum' as const),
    clamp: fc.double({ min: 1e-3, max: 1e3, noNaN: true }),
  },
  { requiredKeys: [] },
);

describe('rank1Vector', () => {
  it('matches the float64 mean (× n, clamped, 1 appended) on random shapes and scales', () => {
    // A float32 sum of n terms is off by at most (n − 1)·u·Σ|xᵢ| from the exact sum; dividing by n
    // (or multiplying by n for 'sum') adds one rounding. Clamping is 1-Lipschitz and the appended 1
    // is exact, so |got − ref| ≤ (n + 1)·u·max|x|·(n for 'sum').
    fc.assert(
      fc.property(rowsTensorSpec, optionsArbitrary, ({ shape, values }, options) => {
        const x = tf.tensor(values, shape);
        const rows = rowsOf(x);
        const expected = rank1Vector64(rows, options);
        const { result, leaked } = countLeakedTensors(
          () => {
            const v = rank1Vector(x, options);
            return { tensor: v, shape: v.shape, values: v.dataSync().slice() };
          },
          ({ tensor }) => tensor.dispose(),
        );
        expect(leaked).toBe(0);
        expect(x.isDisposed).toBe(false);
        expect(result.shape).toEqual([expected.length]);
        const maxAbs = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        // Plus the smallest normal float32 (2⁻¹²⁶), for means that underflow to subnormals.
        const tolerance = (rows.rows + 1) * UNIT_ROUNDOFF * maxAbs * (options.scale === 'sum' ? rows.rows : 1) + 2 ** -126;
        expected.forEach((e, i) => expect(Math.abs((result.values[i] as number) - e)).toBeLessThanOrEqual(tolerance));
        x.dispose();
      }),
      { numRuns: 60 },
    );
  });

  it('computes the worked example exactly', () => {
    const x = tf.tensor2d([
      [1, 2],
      [3, 4],
    ]);
    const before = tf.memory().numTensors;
    const outputs = [
      rank1Vector(x),
      rank1Vector(x, { scale: 'sum' }),
      rank1Vector(x, { scale: 'sum', clamp: 5 }),
      rank1Vector(x, { appendOne: true, clamp: 2.5 }),
    ];
    expect(outputs.map((o) => Array.from(o.dataSync()))).toEqual([
      [2, 3],
      [4, 6],
      [4, 5],
      [2, 2.5, 1],
    ]);
    tf.dispose(outputs);
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });

  it('treats [batch, seq, d] as batch·seq rows and a vector as one row', () => {
    const x3 = tf.tensor3d(Float32Array.from({ length: 2 * 3 * 4 }, (_, i) => Math.sin(i)), [2, 3, 4]);
    const x2 = tf.reshape(x3, [6, 4]);
    const vector = tf.tensor1d([0.5, -1.5, 2]);
    const before = tf.memory().numTensors;
    const from3 = rank1Vector(x3, { scale: 'sum' });
    const from2 = rank1Vector(x2, { scale: 'sum' });
    const fromVector = rank1Vector(vector, { appendOne: true });
    expect(Array.from(from3.dataSync())).toEqual(Array.from(from2.dataSync()));
    expect(Array.from(fromVector.dataSync())).toEqual([0.5, -1.5, 2, 1]);
    tf.dispose([from3, from2, fromVector]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x3, x2, vector]);
  });

  it('casts integer rows to float32 and propagates NaN rows (no read-back)', () => {
    const ints = tf.tensor2d([1, 2, 4, 7], [2, 2], 'int32');
    const withNaN = tf.tensor2d([1, Number.NaN, 3, 4], [2, 2]);
    const before = tf.memory().numTensors;
    const fromInts = rank1Vector(ints);
    const fromNaN = rank1Vector(withNaN, { clamp: 1 });
    expect(fromInts.dtype).toBe('float32');
    expect(Array.from(fromInts.dataSync())).toEqual([2.5, 4.5]);
    const [first, second] = fromNaN.dataSync();
    expect(first).toBe(1);
    expect(second).toBeNaN();
    tf.dispose([fromInts, fromNaN]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([ints, withNaN]);
  });

  it('refuses bad input with the function name in the message', () => {
    const x = tf.tensor2d([[1, 2]]);
    const scalar = tf.scalar(3);
    const empty = tf.zeros([0, 3]);
    const text = tf.tensor1d(['a'], 'string');
    const before = tf.memory().numTensors;
    expect(() => rank1Vector(scalar)).toThrow('rank1Vector: x must have rank ≥ 1, got shape []');
    expect(() => rank1Vector(empty)).toThrow('rank1Vector: x must not be empty, got shape [0, 3]');
    expect(() => rank1Vector(text)).toThrow('rank1Vector: x must be numeric, got dtype string');
    expect(() => rank1Vector([1, 2] as unknown as tf.Tensor)).toThrow('rank1Vector: x must be a tf.Tensor');
    expect(() => rank1Vector(x, { clamp: Number.NaN })).toThrow('rank1Vector: clamp must be (0, ∞), got NaN');
    expect(() => rank1Vector(x, { clamp: 0 })).toThrow(/rank1Vector: clamp/);
    expect(() => rank1Vector(x, { clamp: Number.POSITIVE_INFINITY })).toThrow(/rank1Vector: clamp/);
    expect(() => rank1Vector(x, { scale: 'max' as 'sum' })).toThrow("rank1Vector: scale must be one of 'mean', 'sum', got max");
    expect(() => rank1Vector(x, { appendOne: 1 as unknown as boolean })).toThrow('rank1Vector: appendOne must be a boolean');
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, scalar, empty, text]);
    expect(() => rank1Vector(x)).toThrow('rank1Vector: x has been disposed');
  });
});

describe('blockSizes', () => {
  it('splits n rows into r contiguous blocks differing by at most one row, larger first', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 200 }), (n, rRaw) => {
        const r = Math.min(n, rRaw);
        const sizes = blockSizes(n, r);
        expect(sizes).toHaveLength(r);
        expect(sizes.reduce((a, b) => a + b, 0)).toBe(n);
        expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
        expect(sizes).toEqual([...sizes].sort((a, b) => b - a));
      }),
    );
  });
});

describe('rankRVectors', () => {
  /** Σ_k v_k v_kᵀ of the returned rows, in float64. */
  function outerSum64(v: Matrix64): Matrix64 {
    return matrix(v.cols, v.cols, secondMoment64(v).data.map((x) => x * v.rows));
  }

  it('is rank1Vector for r = 1 and the scaled rows for r = n', () => {
    const x = tf.tensor2d(Float32Array.from({ length: 5 * 3 }, (_, i) => Math.cos(i * 1.3)), [5, 3]);
    const before = tf.memory().numTensors;
    const single = rankRVectors(x, 1, { appendOne: true, scale: 'sum', clamp: 2 });
    const reference = rank1Vector(x, { appendOne: true, scale: 'sum', clamp: 2 });
    const everyRow = rankRVectors(x, 5);
    expect(single.shape).toEqual([1, 4]);
    expect(Array.from(single.dataSync())).toEqual(Array.from(reference.dataSync()));
    const rows = x.dataSync();
    // Each row times √(1/5): one float32 multiplication, relative error ≤ u.
    everyRow.dataSync().forEach((v, i) => expect(v).toBeCloseTo((rows[i] as number) / Math.sqrt(5), 6));
    tf.dispose([single, reference, everyRow]);
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });

  it('gives Σ v vᵀ = Σ_k w_k m_k m_kᵀ, and C − Σ v vᵀ is positive semi-definite', () => {
    // Block means carry at most (n_k + 1)·u·max|x| absolute error, so the entries of Σ v vᵀ are off by
    // at most about 2(n + 2)·u·max|x|² (‖·‖ ≤ 1 after normalising to max|x| = 1): 1e-5 is ample.
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 24 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 24 }),
        fc.array(fc.double({ min: -1, max: 1, noNaN: true }), { minLength: 24 * 5, maxLength: 24 * 5 }),
        (n, d, rRaw, seed) => {
          const r = Math.min(n, rRaw);
          const x = tf.tensor2d(Float32Array.from(seed.slice(0, n * d)), [n, d]);
          const rows = rowsOf(x);
          const { result, leaked } = countLeakedTensors(
            () => {
              const v = rankRVectors(x, r);
              return { tensor: v, shape: v.shape, rows: rowsOf(v) };
            },
            ({ tensor }) => tensor.dispose(),
          );
          expect(leaked).toBe(0);
          expect(result.shape).toEqual([r, d]);
          const vectors = outerSum64(result.rows);
          // Reference: the block means of the float64 rows, weighted by |B_k| / n.
          const expected = matrix(d, d);
          let start = 0;
          for (const size of blockSizes(n, r)) {
            const mean = rowMean64(matrix(size, d, rows.data.subarray(start * d, (start + size) * d)));
            for (let i = 0; i < d; i++) {
              for (let j = 0; j < d; j++) {
                expected.data[i * d + j] = (expected.data[i * d + j] as number) + (size / n) * (mean[i] as number) * (mean[j] as number);
              }
            }
            start += size;
          }
          vectors.data.forEach((v, i) => expect(Math.abs(v - (expected.data[i] as number))).toBeLessThanOrEqual(1e-5));
          const within = secondMoment64(rows);
          const shifted = matrix(d, d, within.data.map((c, i) => c - (vectors.data[i] as number) + (i % (d + 1) === 0 ? 1e-5 : 0)));
          expect(cholesky(shifted)).not.toBeNull();
          x.dispose();
        },
      ),
      { numRuns: 60 },
    );
  });

  it('refuses a bad r', () => {
    const x = tf.zeros([4, 2]);
    expect(() => rankRVectors(x, 0)).toThrow('rankRVectors: r must be an integer in [1, 4], got 0');
    expect(() => rankRVectors(x, 5)).toThrow('rankRVectors: r must be an integer in [1, 4], got 5');
    expect(() => rankRVectors(x, 1.5)).toThrow(/rankRVectors: r must be an integer/);
    expect(() => rankRVectors(tf.scalar(1), 1)).toThrow('rankRVectors: x must have rank ≥ 1');
    x.dispose();
  });
});
