import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { scaledVector, spdMatrix } from './arbitraries';
import { cholesky, identity, inverse, inverseFactor64, matmul, matrix, relativeError, transpose } from './float64';

describe('float64 reference', () => {
  it('Cholesky reproduces an SPD matrix and its inverse is exact', () => {
    fc.assert(
      fc.property(spdMatrix({ maxDim: 8, maxCondition: 1e4 }), (a) => {
        const l = cholesky(a);
        expect(l).not.toBeNull();
        expect(relativeError(matmul(l!, transpose(l!)), a)).toBeLessThan(1e-10);
        expect(relativeError(matmul(a, inverse(a)), identity(a.rows))).toBeLessThan(1e-8);
      }),
    );
  });

  it('inverseFactor64 reads a dense factor and assembles a low-rank one, c·I + U·diag(m)·Uᵀ', () => {
    const before = tf.memory().numTensors;
    const dense = tf.tensor2d([[1, 2], [3, 4]]);
    expect(Array.from(inverseFactor64(dense).data)).toEqual([1, 2, 3, 4]);
    // 2·I + 3·[1, 2]ᵀ[1, 2] + 0·(an unused column) - 1·[0, 1]ᵀ[0, 1]
    const parts = { scale: tf.scalar(2), basis: tf.tensor2d([[1, 5, 0], [2, 7, 1]]), weights: tf.tensor1d([3, 0, -1]) };
    expect(Array.from(inverseFactor64(parts).data)).toEqual([5, 6, 6, 13]);
    tf.dispose([dense, parts.scale, parts.basis, parts.weights]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('Cholesky refuses an indefinite matrix', () => {
    expect(cholesky(matrix(2, 2, [1, 2, 2, 1]))).toBeNull();
    expect(cholesky(matrix(1, 1, [Number.NaN]))).toBeNull();
  });
});

describe('arbitraries', () => {
  it('spdMatrix spans its condition numbers and is far from diagonal', () => {
    const samples = fc.sample(spdMatrix({ minDim: 4, maxDim: 6, maxCondition: 1e6 }), { numRuns: 200, seed: 1 });
    const offDiagonalShare = samples.map((a) => {
      let off = 0;
      let all = 0;
      for (let i = 0; i < a.rows; i++) for (let j = 0; j < a.cols; j++) {
        const v = Math.abs(a.data[i * a.cols + j] as number);
        all += v;
        if (i !== j) off += v;
      }
      return off / all;
    });
    offDiagonalShare.sort((x, y) => x - y);
    expect(offDiagonalShare[100]).toBeGreaterThan(0.05);
    const conditions = samples.map((a) => {
      const inv = inverse(a);
      let maxA = 0;
      let maxInv = 0;
      for (let i = 0; i < a.rows; i++) {
        let ra = 0;
        let ri = 0;
        for (let j = 0; j < a.cols; j++) {
          ra += Math.abs(a.data[i * a.cols + j] as number);
          ri += Math.abs(inv.data[i * a.cols + j] as number);
        }
        maxA = Math.max(maxA, ra);
        maxInv = Math.max(maxInv, ri);
      }
      return maxA * maxInv;
    });
    expect(Math.max(...conditions)).toBeGreaterThan(1e4);
    expect(conditions.filter((c) => c > 100).length).toBeGreaterThan(50);
  });

  it('scaledVector spans its scales', () => {
    const norms = fc.sample(scaledVector(4, -8, 4), { numRuns: 300, seed: 2 }).map((v) => Math.hypot(...v));
    expect(norms.filter((n) => n === 0).length).toBeGreaterThan(5);
    expect(norms.filter((n) => n > 1e2).length).toBeGreaterThan(20);
    expect(norms.filter((n) => n > 0 && n < 1e-5).length).toBeGreaterThan(20);
  });
});
