import { countLeakedTensors } from '@mkor/testing';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import {
  frobeniusNorm,
  rescaleFactor,
  rescaleFactorSummedNorms,
  rescaleToNorm,
  rescaleToNormWithFactor,
  rescaleToSummedNorms,
} from './index';

const UNIT_ROUNDOFF = 2 ** -24;
const FLOAT32_MAX = 3.4028234663852886e38;
/** Smallest normal float32: results below it underflow (to subnormals or 0) and lose precision. */
const FLOAT32_MIN_NORMAL = 2 ** -126;

/**
 * Random entries in [−1, 1]·10^k as float32, with magnitudes below 1e-30 set to 0: subnormal
 * inputs are flushed to zero by some backends, which would make the norms backend-dependent.
 */
function scaledEntries(n: number, log10Scale: number): fc.Arbitrary<Float32Array> {
  return fc
    .array(fc.double({ min: -1, max: 1, noNaN: true }), { minLength: n, maxLength: n })
    .map((v) => Float32Array.from(v, (x) => (Math.abs(x * 10 ** log10Scale) < 1e-30 ? 0 : x * 10 ** log10Scale)));
}

/**
 * Checks the rescaled entries against `factor·raw` in float64 — or, when `factor` overflows
 * float32 (ν of the float32 code is then Inf), against the raw gradient. Factors within a factor
 * 10 of the overflow threshold may go either way and are not checked.
 */
function expectRescaled(got: Float32Array, raw: ArrayLike<number>, gradient: ArrayLike<number>, factor: number, largest: number, tolerance: number): void {
  if (factor > FLOAT32_MAX) {
    expect(Array.from(got)).toEqual(Array.from(gradient));
    return;
  }
  if (factor > FLOAT32_MAX / 10) return;
  for (let i = 0; i < raw.length; i++) {
    const expected = factor * (raw[i] as number);
    // A subnormal ν carries an absolute error up to 2⁻¹⁵⁰, i.e. a relative one of 2⁻¹⁵⁰/ν.
    expect(Math.abs((got[i] as number) - expected)).toBeLessThanOrEqual((tolerance * factor + 2 ** -150) * largest + FLOAT32_MIN_NORMAL);
  }
}

/** Float64 Euclidean norm of the float32 values (no overflow: squares of float32 fit in float64). */
function norm64(values: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += (values[i] as number) ** 2;
  return Math.sqrt(sum);
}

/**
 * Float32 norms of N entries carry ≈ (N + 4)·u relative error (scaling by the largest entry is
 * exact up to one rounding per entry, the sum adds N − 1, the square root and the product two);
 * ν is a ratio of two of them and each output entry one more product: ≤ 2(N + 6)·u relative to
 * ν·max|Δ|. The bound below uses twice that.
 */
function rescaleTolerance(size: number): number {
  return 4 * (size + 6) * UNIT_ROUNDOFF;
}

/** Reads a tensor result and disposes it, returning its values. */
function take(t: tf.Tensor): Float32Array {
  const values = t.dataSync().slice() as Float32Array;
  t.dispose();
  return values;
}

const tensorPair = fc
  .record({
    shape: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 0, maxLength: 3 }),
    log10UpdateScale: fc.double({ min: -15, max: 15, noNaN: true }),
    log10GradientScale: fc.double({ min: -15, max: 15, noNaN: true }),
  })
  .chain(({ shape, log10UpdateScale, log10GradientScale }) => {
    const size = shape.reduce((a, b) => a * b, 1);
    return fc.record({
      shape: fc.constant(shape),
      update: scaledEntries(size, log10UpdateScale),
      gradient: scaledEntries(size, log10GradientScale),
    });
  });

describe('frobeniusNorm', () => {
  it('matches the float64 norm at any scale, including where Σx² over- or underflows in float32', () => {
    fc.assert(
      fc.property(tensorPair, ({ shape, update }) => {
        const x = tf.tensor(update, shape);
        const { result, leaked } = countLeakedTensors(() => take(frobeniusNorm(x))[0] as number);
        expect(leaked).toBe(0);
        const expected = norm64(update);
        expect(Math.abs(result - expected)).toBeLessThanOrEqual(2 * (update.length + 4) * UNIT_ROUNDOFF * expected);
        x.dispose();
      }),
      { numRuns: 80 },
    );
    const huge = tf.tensor1d([3e30, 4e30]);
    const tiny = tf.tensor1d([3e-30, 4e-30]);
    expect(take(frobeniusNorm(huge))[0]).toBeCloseTo(5e30, -25);
    expect((take(frobeniusNorm(tiny))[0] as number) / 5e-30).toBeCloseTo(1, 6);
    tf.dispose([huge, tiny]);
  });

  it('is 0 for zeros and NaN for NaN or Inf entries', () => {
    const zeros = tf.zeros([2, 3]);
    const nan = tf.tensor1d([1, Number.NaN]);
    const inf = tf.tensor1d([Number.NEGATIVE_INFINITY, 1]);
    const before = tf.memory().numTensors;
    expect(take(frobeniusNorm(zeros))[0]).toBe(0);
    expect(take(frobeniusNorm(nan))[0]).toBeNaN();
    expect(take(frobeniusNorm(inf))[0]).toBeNaN();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([zeros, nan, inf]);
  });
});

describe('rescaleToNorm', () => {
  it('returns (‖∇W‖/‖ΔW‖)·ΔW against float64 on random shapes and scales, with the gradient norm', () => {
    fc.assert(
      fc.property(tensorPair, ({ shape, update, gradient }) => {
        const u = tf.tensor(update, shape);
        const g = tf.tensor(gradient, shape);
        const updateNorm = norm64(update);
        const gradientNorm = norm64(gradient);
        const { result, leaked } = countLeakedTensors(() => ({
          rescaled: take(rescaleToNorm(u, g)),
          factor: take(rescaleFactor(u, g))[0] as number,
        }));
        expect(leaked).toBe(0);
        expect(u.isDisposed || g.isDisposed).toBe(false);
        const tolerance = rescaleTolerance(update.length);
        if (updateNorm === 0 || gradientNorm === 0) {
          // Zero update: the raw gradient. Zero gradient: ν = 0, the raw (zero) gradient.
          expect(Array.from(result.rescaled)).toEqual(Array.from(gradient));
        } else {
          const factor = gradientNorm / updateNorm;
          // A subnormal ν (below 2⁻¹²⁶) is held to within half its spacing, 2⁻¹⁵⁰.
          if (factor <= FLOAT32_MAX / 10) expect(Math.abs(result.factor - factor)).toBeLessThanOrEqual(tolerance * factor + 2 ** -150);
          const largest = update.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
          expectRescaled(result.rescaled, update, gradient, factor, largest, tolerance);
          // ‖ν·Δ‖ = ‖∇‖ (or the raw gradient): the update takes the gradient's norm.
          const underflowSlack = Math.sqrt(update.length) * FLOAT32_MIN_NORMAL;
          expect(Math.abs(norm64(result.rescaled) - gradientNorm)).toBeLessThanOrEqual((tolerance + 2 ** -150 / factor) * gradientNorm + underflowSlack);
        }
        tf.dispose([u, g]);
      }),
      { numRuns: 100 },
    );
  });

  const zeroOrNonFinite: { name: string; update: number[]; gradient: number[]; expected: number[]; factor: number }[] = [
    { name: 'zero update → raw gradient (ν = Inf)', update: [0, 0, 0], gradient: [1, -2, 2], expected: [1, -2, 2], factor: Infinity },
    { name: 'both zero → zeros (ν = NaN)', update: [0, 0, 0], gradient: [0, 0, 0], expected: [0, 0, 0], factor: Number.NaN },
    { name: 'zero gradient → zeros (ν = 0)', update: [1, 2, 3], gradient: [0, 0, 0], expected: [0, 0, 0], factor: 0 },
    { name: 'NaN in the update → raw gradient', update: [1, Number.NaN, 3], gradient: [1, -2, 2], expected: [1, -2, 2], factor: Number.NaN },
    { name: 'Inf in the update → raw gradient', update: [1, Infinity, 3], gradient: [1, -2, 2], expected: [1, -2, 2], factor: Number.NaN },
    { name: 'NaN in the gradient → zeros', update: [1, 2, 2], gradient: [Number.NaN, 1, 1], expected: [0, 0, 0], factor: Number.NaN },
    { name: '−Inf in the gradient → zeros', update: [1, 2, 2], gradient: [-Infinity, 1, 1], expected: [0, 0, 0], factor: Number.NaN },
    { name: 'NaN in both → zeros', update: [Number.NaN, 2, 2], gradient: [Number.NaN, 1, 1], expected: [0, 0, 0], factor: Number.NaN },
    { name: 'ν overflows float32 → raw gradient', update: [1e-30, 0, 0], gradient: [3e30, 0, 4e30], expected: [3e30, 0, 4e30], factor: Infinity },
    { name: 'entries whose squares overflow', update: [1e30, 2e30, 2e30], gradient: [0, 6e30, 0], expected: [2e30, 4e30, 4e30], factor: 2 },
    { name: 'entries whose squares underflow', update: [1e-30, 2e-30, 2e-30], gradient: [0, 0, 6e-30], expected: [2e-30, 4e-30, 4e-30], factor: 2 },
  ];
  for (const { name, update, gradient, expected, factor } of zeroOrNonFinite) {
    it(`never lets NaN through: ${name}`, () => {
      const u = tf.tensor1d(update);
      const g = tf.tensor1d(gradient);
      const before = tf.memory().numTensors;
      const rescaled = take(rescaleToNorm(u, g));
      const nu = take(rescaleFactor(u, g))[0] as number;
      const both = rescaleToNormWithFactor(u, g);
      expect(Array.from(take(both.rescaled))).toEqual(Array.from(rescaled));
      expect(take(both.factor)[0]).toEqual(nu);
      expect(tf.memory().numTensors).toBe(before);
      rescaled.forEach((v, i) => {
        expect(Number.isFinite(v)).toBe(true);
        expect(Math.abs(v - (expected[i] as number))).toBeLessThanOrEqual(1e-6 * Math.abs(expected[i] as number));
      });
      if (Number.isNaN(factor)) expect(nu).toBeNaN();
      else if (factor === Infinity) expect(nu > FLOAT32_MAX).toBe(true);
      else expect(nu).toBeCloseTo(factor, 5);
      tf.dispose([u, g]);
    });
  }

  it('refuses mismatched or bad tensors', () => {
    const a = tf.zeros([2, 3]);
    const b = tf.zeros([3, 2]);
    const ints = tf.zeros([2, 3], 'int32');
    const empty = tf.zeros([0]);
    expect(() => rescaleToNorm(a, b)).toThrow('rescaleToNorm: update and gradient must have the same shape, got [2, 3] and [3, 2]');
    expect(() => rescaleToNorm(a, ints)).toThrow('rescaleToNorm: gradient must have dtype float32, got int32');
    expect(() => rescaleToNorm(empty, empty)).toThrow('rescaleToNorm: update must not be empty, got shape [0]');
    expect(() => rescaleToNorm(a, null as unknown as tf.Tensor)).toThrow('rescaleToNorm: gradient must be a tf.Tensor, got null');
    expect(() => rescaleFactor(a, b)).toThrow('rescaleFactor: update and gradient must have the same shape');
    expect(() => rescaleToNormWithFactor(a, b)).toThrow('rescaleToNormWithFactor: update and gradient must have the same shape');
    expect(() => frobeniusNorm(ints)).toThrow('frobeniusNorm: x must have dtype float32, got int32');
    tf.dispose([a, b, ints, empty]);
    expect(() => rescaleToNorm(a, a)).toThrow('rescaleToNorm: update has been disposed');
  });
});

describe('rescaleToSummedNorms', () => {
  const layerPair = fc
    .record({
      rows: fc.integer({ min: 1, max: 6 }),
      cols: fc.integer({ min: 1, max: 6 }),
      withBias: fc.boolean(),
      log10UpdateScale: fc.double({ min: -12, max: 12, noNaN: true }),
      log10GradientScale: fc.double({ min: -12, max: 12, noNaN: true }),
    })
    .chain((spec) => {
      const biasSize = spec.withBias ? spec.cols : 0;
      return fc.record({
        spec: fc.constant(spec),
        updateWeight: scaledEntries(spec.rows * spec.cols, spec.log10UpdateScale),
        updateBias: scaledEntries(biasSize, spec.log10UpdateScale),
        gradientWeight: scaledEntries(spec.rows * spec.cols, spec.log10GradientScale),
        gradientBias: scaledEntries(biasSize, spec.log10GradientScale),
      });
    });

  it('uses ν = (‖∇W‖_F + ‖∇b‖₂)/(‖ΔW‖_F + ‖Δb‖₂) for both parts, against float64', () => {
    fc.assert(
      fc.property(layerPair, ({ spec, updateWeight, updateBias, gradientWeight, gradientBias }) => {
        const shape = [spec.rows, spec.cols];
        const update = { weight: tf.tensor(updateWeight, shape), ...(spec.withBias ? { bias: tf.tensor1d(updateBias) } : {}) };
        const gradient = { weight: tf.tensor(gradientWeight, shape), ...(spec.withBias ? { bias: tf.tensor1d(gradientBias) } : {}) };
        const factor = (norm64(gradientWeight) + norm64(gradientBias)) / (norm64(updateWeight) + norm64(updateBias));
        const { result, leaked } = countLeakedTensors(() => {
          const out = rescaleToSummedNorms(update, gradient);
          return {
            hasBias: out.bias !== undefined,
            weight: take(out.weight),
            bias: out.bias === undefined ? new Float32Array(0) : take(out.bias),
            factor: take(rescaleFactorSummedNorms(update, gradient))[0] as number,
          };
        });
        expect(leaked).toBe(0);
        expect(result.hasBias).toBe(spec.withBias);
        const tolerance = rescaleTolerance(updateWeight.length + updateBias.length);
        if (!Number.isFinite(factor) || factor === 0) {
          expect(Array.from(result.weight)).toEqual(Array.from(gradientWeight));
          expect(Array.from(result.bias)).toEqual(Array.from(gradientBias));
        } else {
          // A subnormal ν (below 2⁻¹²⁶) is held to within half its spacing, 2⁻¹⁵⁰.
          if (factor <= FLOAT32_MAX / 10) expect(Math.abs(result.factor - factor)).toBeLessThanOrEqual(tolerance * factor + 2 ** -150);
          const largest = [...updateWeight, ...updateBias].reduce((m, v) => Math.max(m, Math.abs(v)), 0);
          expectRescaled(result.weight, updateWeight, gradientWeight, factor, largest, tolerance);
          expectRescaled(result.bias, updateBias, gradientBias, factor, largest, tolerance);
        }
        tf.dispose([update.weight, gradient.weight, update.bias, gradient.bias].filter((t) => t !== undefined));
      }),
      { numRuns: 100 },
    );
  });

  it('differs from the norm of [ΔW | Δb] and equals rescaleToNorm without a bias', () => {
    const update = { weight: tf.tensor2d([[3, 0]]), bias: tf.tensor1d([0, 4]) };
    const gradient = { weight: tf.tensor2d([[0, 7]]), bias: tf.tensor1d([0, 0]) };
    const before = tf.memory().numTensors;
    // ν = (7 + 0)/(3 + 4) = 1, whereas ‖∇‖/‖[ΔW | Δb]‖ = 7/5.
    expect(take(rescaleFactorSummedNorms(update, gradient))[0]).toBeCloseTo(1, 6);
    const out = rescaleToSummedNorms(update, gradient);
    expect(Array.from(take(out.weight))).toEqual([3, 0]);
    expect(Array.from(take(out.bias as tf.Tensor))).toEqual([0, 4]);
    const withoutBias = rescaleToSummedNorms({ weight: update.weight }, { weight: gradient.weight });
    const perTensor = rescaleToNorm(update.weight, gradient.weight);
    expect(withoutBias.bias).toBeUndefined();
    expect(Array.from(take(withoutBias.weight))).toEqual(Array.from(take(perTensor)));
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([update.weight, update.bias, gradient.weight, gradient.bias]);
  });

  it('falls back for the layer as a whole: raw gradients for a broken update, zeros for a broken gradient', () => {
    const weight = tf.tensor2d([[1, 2]]);
    const bias = tf.tensor1d([2]);
    const nanBias = tf.tensor1d([Number.NaN]);
    const zeroWeight = tf.zeros([1, 2]);
    const zeroBias = tf.zeros([1]);
    const before = tf.memory().numTensors;
    const brokenUpdate = rescaleToSummedNorms({ weight, bias: nanBias }, { weight, bias });
    expect(Array.from(take(brokenUpdate.weight))).toEqual([1, 2]);
    expect(Array.from(take(brokenUpdate.bias as tf.Tensor))).toEqual([2]);
    const brokenGradient = rescaleToSummedNorms({ weight, bias }, { weight, bias: nanBias });
    expect(Array.from(take(brokenGradient.weight))).toEqual([0, 0]);
    expect(Array.from(take(brokenGradient.bias as tf.Tensor))).toEqual([0]);
    const zeroUpdate = rescaleToSummedNorms({ weight: zeroWeight, bias: zeroBias }, { weight, bias });
    expect(Array.from(take(zeroUpdate.weight))).toEqual([1, 2]);
    expect(Array.from(take(zeroUpdate.bias as tf.Tensor))).toEqual([2]);
    expect(take(rescaleFactorSummedNorms({ weight, bias: nanBias }, { weight, bias }))[0]).toBeNaN();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([weight, bias, nanBias, zeroWeight, zeroBias]);
  });

  it('refuses a bias on one side only and mismatched shapes', () => {
    const w = tf.zeros([2, 3]);
    const b = tf.zeros([3]);
    const b4 = tf.zeros([4]);
    expect(() => rescaleToSummedNorms({ weight: w, bias: b }, { weight: w })).toThrow(
      'rescaleToSummedNorms: update and gradient must both have a bias or both have none, got one and none',
    );
    expect(() => rescaleToSummedNorms({ weight: w, bias: b }, { weight: w, bias: b4 })).toThrow(
      'rescaleToSummedNorms: update.bias and gradient.bias must have the same shape, got [3] and [4]',
    );
    expect(() => rescaleFactorSummedNorms({ weight: b }, { weight: w })).toThrow(
      'rescaleFactorSummedNorms: update.weight and gradient.weight must have the same shape, got [3] and [2, 3]',
    );
    expect(() => rescaleToSummedNorms(w as unknown as { weight: tf.Tensor }, { weight: w })).toThrow(
      'rescaleToSummedNorms: update.weight must be a tf.Tensor, got undefined',
    );
    tf.dispose([w, b, b4]);
  });
});
