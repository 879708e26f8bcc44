import {
  type Matrix64,
  blendTowardIdentity64,
  combine,
  fromTensor,
  identity,
  infNorm,
  isPositiveDefinite,
  matmul,
  outer,
  relativeError,
  seeded,
  symmetricEigenvalues,
  updateInverseFactor64,
} from '@mkor/testing';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import type { InverseUpdateForm } from './inverse-update';
import {
  type LowRankInverse,
  applyInverseFactor,
  blendLowRankTowardIdentity,
  lowRankIdentity,
  lowRankNormBound,
  lowRankToDense,
  updateLowRankInverse,
} from './low-rank';

const FORMS: readonly InverseUpdateForm[] = ['exact', 'paper', 'reference'];

/** The float64 `c·I + U·diag(m)·Uᵀ` of a low-rank factor's tensors. */
function dense64(factor: LowRankInverse): Matrix64 {
  const d = factor.basis.shape[0] as number;
  const r = factor.basis.shape[1] as number;
  const c = factor.scale.dataSync()[0] as number;
  const u = factor.basis.dataSync();
  const m = factor.weights.dataSync();
  let result = combine(c, identity(d), 0, identity(d));
  for (let k = 0; k < r; k++) {
    const column = Array.from({ length: d }, (_, i) => u[i * r + k] as number);
    result = combine(1, result, m[k] as number, outer(column, column));
  }
  return result;
}

/** `|m_k|·‖u_k‖²` of every term of a low-rank factor. */
function termSizes(factor: LowRankInverse): number[] {
  const d = factor.basis.shape[0] as number;
  const r = factor.basis.shape[1] as number;
  const u = factor.basis.dataSync();
  const m = factor.weights.dataSync();
  return Array.from({ length: r }, (_, k) => Math.abs(m[k] as number) * Array.from({ length: d }, (_, i) => (u[i * r + k] as number) ** 2).reduce((a, b) => a + b, 0));
}

function disposeFactor(f: LowRankInverse): void {
  tf.dispose([f.scale, f.basis, f.weights]);
}

/** `steps` seeded vectors of length d, scaled to about `size`. */
function vectors(steps: number, d: number, seed: number, size: number): number[][] {
  return Array.from({ length: steps }, (_, k) => Array.from(seeded(d, seed + k), (x) => x * size));
}

describe('updateLowRankInverse', () => {
  for (const form of FORMS) {
    it(`'${form}' equals the dense update (float64) while the window holds every term`, () => {
      const before = tf.memory().numTensors;
      const d = 9;
      const rank = 6;
      let factor = lowRankIdentity(d, rank);
      let reference: Matrix64 = identity(d);
      for (const v of vectors(rank, d, 7, 1.5)) {
        const vector = tf.tensor1d(v);
        const { inverse, dropped } = updateLowRankInverse(factor, vector, { form, gamma: 0.8 });
        expect(dropped.dataSync()[0]).toBe(0);
        reference = updateInverseFactor64(reference, Float64Array.from(Float32Array.from(v)), form, 0.8);
        expect(relativeError(dense64(inverse), reference)).toBeLessThan(2e-5);
        const asDense = lowRankToDense(inverse);
        expect(relativeError(fromTensor(asDense), reference)).toBeLessThan(2e-5);
        tf.dispose([vector, dropped, asDense]);
        disposeFactor(factor);
        factor = inverse;
      }
      disposeFactor(factor);
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('once full, drops the term of least |m|·‖u‖²: the factor moves by exactly that in the 2-norm and stays ⪰ the exact step (Lemma 3.1 carries over)', () => {
    const before = tf.memory().numTensors;
    fc.assert(
      fc.property(
        fc.integer({ min: 3, max: 8 }),
        fc.integer({ min: 1, max: 4 }),
        fc.constantFrom<InverseUpdateForm>('exact', 'reference'),
        fc.double({ min: 0.5, max: 0.99, noNaN: true }),
        fc.integer({ min: 0, max: 10_000 }),
        fc.double({ min: 0.1, max: 10, noNaN: true }),
        (d, rank, form, gamma, seed, size) => {
          let factor = lowRankIdentity(d, rank);
          let truncations = 0;
          for (const v of vectors(rank + 4, d, seed, size)) {
            const start = dense64(factor);
            const vector = tf.tensor1d(v);
            const { inverse, dropped } = updateLowRankInverse(factor, vector, { form, gamma });
            // The exact step of the factor as it was, in float64; the result differs from it only by the dropped term.
            const exact = updateInverseFactor64(start, Float64Array.from(Float32Array.from(v)), form, gamma);
            const result = dense64(inverse);
            const difference = combine(1, result, -1, exact);
            const droppedSize = dropped.dataSync()[0] as number;
            const eigenvalues = symmetricEigenvalues(difference);
            const scale = Math.max(infNorm(exact), infNorm(result), droppedSize);
            // ‖P̃ − P‖₂ = dropped, and P̃ − P ⪰ 0: one eigenvalue ≈ dropped, none below −rounding.
            expect(Math.abs((eigenvalues[eigenvalues.length - 1] as number) - droppedSize)).toBeLessThanOrEqual(1e-4 * scale);
            expect(eigenvalues[0] as number).toBeGreaterThanOrEqual(-1e-4 * scale);
            expect(isPositiveDefinite(result)).toBe(true);
            // The least term went: every kept old term weighs at least as much (the new one may weigh less).
            const sizes = termSizes(inverse);
            expect(sizes.filter((size) => size < droppedSize * (1 - 1e-5)).length).toBeLessThanOrEqual(1);
            if (droppedSize > 0) truncations += 1;
            tf.dispose([vector, dropped]);
            disposeFactor(factor);
            factor = inverse;
          }
          disposeFactor(factor);
          // rank + 4 updates into rank slots: the last four replaced a term each (unless it weighed nothing).
          expect(truncations).toBeLessThanOrEqual(4);
        },
      ),
      { numRuns: 40 },
    );
    expect(tf.memory().numTensors).toBe(before);
  });

  it('handles every magnitude of v as the dense update does (scaled by a power of two)', () => {
    const before = tf.memory().numTensors;
    for (const size of [1e-20, 1, 1e20]) {
      const factor = lowRankIdentity(3, 2);
      const vector = tf.tensor1d([size, -2 * size, 0.5 * size]);
      const { inverse, dropped } = updateLowRankInverse(factor, vector, { form: 'exact', gamma: 0.9 });
      const reference = updateInverseFactor64(identity(3), Float64Array.from(Float32Array.from([size, -2 * size, 0.5 * size])), 'exact', 0.9);
      const result = dense64(inverse);
      expect(result.data.every(Number.isFinite)).toBe(true);
      expect(relativeError(result, reference)).toBeLessThan(1e-5);
      tf.dispose([vector, dropped]);
      disposeFactor(factor);
      disposeFactor(inverse);
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses NaN or Inf in its inputs and a result beyond float32 (checkFinite, the default), freeing what it made', () => {
    const factor = lowRankIdentity(3, 2);
    const nan = tf.tensor1d([1, Number.NaN, 3]);
    const huge = { scale: tf.scalar(3e38), basis: tf.zeros([3, 2]) as tf.Tensor2D, weights: tf.zeros([2]) as tf.Tensor1D };
    const v = tf.tensor1d([1, 2, 3]);
    const before = tf.memory().numTensors;
    expect(() => updateLowRankInverse(factor, nan)).toThrow('updateLowRankInverse: v contains NaN or Inf');
    // 3e38/γ overflows float32.
    expect(() => updateLowRankInverse(huge, v, { gamma: 0.5 })).toThrow('updateLowRankInverse: the updated inverse is not representable in float32');
    expect(tf.memory().numTensors).toBe(before);
    const unchecked = updateLowRankInverse(factor, nan, { checkFinite: false });
    expect(unchecked.inverse.basis.dataSync().some(Number.isNaN)).toBe(true);
    tf.dispose([nan, v, unchecked.dropped]);
    [factor, huge, unchecked.inverse].forEach(disposeFactor);
  });

  it('refuses mismatched shapes, dtypes, γ and forms, naming itself', () => {
    const factor = lowRankIdentity(3, 2);
    const short = tf.tensor1d([1, 2]);
    const ints = tf.tensor1d([1, 2, 3], 'int32');
    const v = tf.tensor1d([1, 2, 3]);
    expect(() => updateLowRankInverse(factor, short)).toThrow(/updateLowRankInverse: v must have length 3/);
    expect(() => updateLowRankInverse(factor, ints as tf.Tensor1D)).toThrow('updateLowRankInverse: v must be a float32 tensor, got dtype int32');
    expect(() => updateLowRankInverse(factor, v, { gamma: 1 })).toThrow('updateLowRankInverse: gamma must be (0, 1), got 1');
    expect(() => updateLowRankInverse(factor, v, { form: 'kfac' as never })).toThrow(/form must be one of 'exact', 'paper', 'reference'/);
    expect(() => updateLowRankInverse(tf.eye(3) as never, v)).toThrow('updateLowRankInverse: inverse must be a low-rank factor { scale, basis, weights }');
    expect(() => lowRankIdentity(3, 0)).toThrow('lowRankIdentity: rank must be an integer in [1, ∞), got 0');
    tf.dispose([short, ints, v]);
    disposeFactor(factor);
  });
});

describe('applyInverseFactor, blendLowRankTowardIdentity, lowRankNormBound', () => {
  it('multiply like the dense matrix on either side, blend like eq. 7/8, and bound the inf norm from above', () => {
    const before = tf.memory().numTensors;
    let factor = lowRankIdentity(5, 3);
    for (const v of vectors(3, 5, 21, 2)) {
      const vector = tf.tensor1d(v);
      const { inverse, dropped } = updateLowRankInverse(factor, vector, { form: 'exact', gamma: 0.7 });
      tf.dispose([vector, dropped]);
      disposeFactor(factor);
      factor = inverse;
    }
    const p = dense64(factor);
    const x = tf.tensor2d(seeded(10, 3), [5, 2]);
    const y = tf.tensor2d(seeded(10, 4), [2, 5]);
    const left = applyInverseFactor(factor, x, 'left');
    const right = applyInverseFactor(factor, y, 'right');
    expect(relativeError(fromTensor(left), matmul(p, fromTensor(x)))).toBeLessThan(1e-5);
    expect(relativeError(fromTensor(right), matmul(fromTensor(y), p))).toBeLessThan(1e-5);
    const dense = lowRankToDense(factor);
    const denseLeft = applyInverseFactor(dense, x, 'left');
    expect(relativeError(fromTensor(denseLeft), fromTensor(left))).toBeLessThan(1e-5);
    const blended = blendLowRankTowardIdentity(factor, 0.3);
    expect(relativeError(dense64(blended), blendTowardIdentity64(p, 0.3))).toBeLessThan(1e-5);
    const bound = lowRankNormBound(factor);
    expect(bound.dataSync()[0] as number).toBeGreaterThanOrEqual(infNorm(p) * (1 - 1e-6));
    const identityFactor = lowRankIdentity(4, 2);
    const identityBound = lowRankNormBound(identityFactor);
    expect(identityBound.dataSync()[0]).toBe(1);
    tf.dispose([x, y, left, right, dense, denseLeft, bound, identityBound]);
    [factor, blended, identityFactor].forEach(disposeFactor);
    expect(tf.memory().numTensors).toBe(before);
  });
});
