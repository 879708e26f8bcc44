import {
  type Matrix64,
  blendTowardIdentity64,
  combine,
  frobeniusNorm,
  identity,
  infNorm,
  inverseFactor64,
  matmul,
  matrix,
  relativeError,
  seeded,
  updateInverseFactor64,
} from '@mkor/testing';
import { isLowRank } from '@mkor/sherman-morrison';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import type { LayerStatistics, SecondOrderLayer } from '@mkor/capture';
import { applyTransform, tensorsIn } from '@mkor/core';
import type { BlockPreconditionerState } from '@mkor/second-order';

import type { MkorLayerState } from './block';
import { mkorPreconditioner } from './mkor';


const layer: SecondOrderLayer = { name: 'dense', kind: 'dense', gradientCount: 'rows', kernelName: 'dense/kernel', biasName: 'dense/bias', inputDim: 5, outputDim: 3, kernelShape: [5, 3] };
const conv: SecondOrderLayer = { name: 'conv', kind: 'conv2d', gradientCount: 'samples', kernelName: 'conv/kernel', inputDim: 2 * 2 * 2, outputDim: 4, kernelShape: [2, 2, 2, 4] };

/** One layer's MKOR factors in a preconditioner's state. */
function factorsOf(state: BlockPreconditionerState, name: string): MkorLayerState {
  return state.layers[name]!.block as MkorLayerState;
}

/** Float64 mirror of one default-preset step for one layer with a bias (exact form, blend stabiliser, Frobenius rescale). */
function step64(
  factors: { input: Matrix64; output: Matrix64 },
  stats: { a: number[]; g: number[]; rows: number } | null,
  kernelGrad: Matrix64,
  biasGrad: number[],
  o: { gamma: number; epsilon: number; zeta: number },
): Matrix64 {
  if (stats !== null) {
    const refresh = (f: Matrix64, v: number[]) => {
      const start = infNorm(f) > o.epsilon ? blendTowardIdentity64(f, o.zeta) : f;
      return updateInverseFactor64(start, v, 'exact', o.gamma);
    };
    factors.input = refresh(factors.input, [...stats.a, 1]);
    factors.output = refresh(factors.output, stats.g.map((x) => x * stats.rows));
  }
  const grad = matrix(kernelGrad.rows + 1, kernelGrad.cols, [...kernelGrad.data, ...biasGrad]);
  const pre = matmul(matmul(factors.input, grad), factors.output);
  return combine(frobeniusNorm(grad) / frobeniusNorm(pre), pre, 0, pre);
}

describe('mkorPreconditioner', () => {
  it('matches a float64 mirror over steps with and without factor updates', () => {
    const options = { gamma: 0.9, epsilon: 3, zeta: 0.5 };
    const transform = mkorPreconditioner([layer], { gamma: options.gamma, stabilizer: { epsilon: options.epsilon, zeta: options.zeta, norm: 'inf' }, factorUpdateInterval: 2 });
    let state = transform.init({});
    const factors64 = { input: identity(6), output: identity(3) };
    const before = tf.memory().numTensors;
    for (let step = 0; step < 7; step++) {
      const kernel = Array.from(seeded(15, 100 * step));
      const bias = Array.from(seeded(3, 100 * step + 1));
      const stats = { a: Array.from(seeded(5, 100 * step + 2)), g: Array.from(seeded(3, 100 * step + 3), (v) => v * 0.1), rows: 8 };
      const statistics: LayerStatistics = { a: tf.tensor1d(stats.a), g: tf.tensor1d(stats.g), rows: stats.rows, samples: stats.rows, step };
      const grads = { 'dense/kernel': tf.tensor2d(kernel, [5, 3]), 'dense/bias': tf.tensor1d(bias), other: tf.tensor1d([1, 2]) };
      const result = applyTransform(transform, grads, state, { extras: { statistics: { dense: statistics } } });
      state = result.state;
      const expected = step64(factors64, step % 2 === 0 ? stats : null, matrix(5, 3, kernel), bias, options);
      const got = matrix(6, 3, [...result.updates['dense/kernel']!.dataSync(), ...result.updates['dense/bias']!.dataSync()]);
      // Factors with condition up to ~1e2 after a few updates: float32 keeps ~5 digits.
      expect(relativeError(got, expected)).toBeLessThan(1e-4);
      expect(result.updates.other).toBe(grads.other);
      expect(relativeError(inverseFactor64(factorsOf(state, 'dense').inputInverse), factors64.input)).toBeLessThan(1e-4);
      expect(state.metrics?.refreshed).toEqual(step % 2 === 0 ? ['dense'] : []);
      expect(state.metrics?.scaleFactors.dense).toBeGreaterThan(0);
      tf.dispose([statistics.a, statistics.g, ...Object.values(grads), result.updates['dense/kernel']!, result.updates['dense/bias']!]);
    }
    expect(state.totals.refreshes).toBe(4);
    // Only the two factors remain, replaced in place of the identity ones created by init.
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose(Object.values(factorsOf(state, 'dense')));
  });

  it('reshapes conv kernels, and does not reuse stale statistics', () => {
    const transform = mkorPreconditioner([conv], { factorUpdateInterval: 1, collectMetrics: false });
    let state = transform.init({});
    const statistics: LayerStatistics = { a: tf.ones([8]), g: tf.ones([4]), rows: 2, samples: 2, step: 0 };
    const grads = { 'conv/kernel': tf.ones([2, 2, 2, 4]) };
    for (let i = 0; i < 2; i++) {
      const result = applyTransform(transform, grads, state, { extras: { statistics: { conv: statistics } } });
      expect(result.updates['conv/kernel']!.shape).toEqual([2, 2, 2, 4]);
      tf.dispose(result.updates['conv/kernel']!);
      state = result.state;
    }
    // The second step saw the same statistics (step 0): the factor update is skipped for them.
    expect(state.layers.conv!.statisticsStep).toBe(0);
    const after = inverseFactor64(factorsOf(state, 'conv').inputInverse);
    const once = updateInverseFactor64(identity(8), new Array(8).fill(1), 'exact', 0.95);
    expect(relativeError(after, once)).toBeLessThan(1e-5);
    tf.dispose([statistics.a, statistics.g, grads['conv/kernel'], ...Object.values(factorsOf(state, 'conv'))]);
  });

  it("scales g by the batch size for conv2d layers and by the rows for dense ones ('sum')", () => {
    const g = [0.1, -0.2, 0.3, 0.05];
    for (const [layer, expectedScale] of [[conv, 3], [{ ...conv, kind: 'dense' as const, gradientCount: 'rows' as const }, 12]] as const) {
      const transform = mkorPreconditioner([layer], { factorUpdateInterval: 1, stabilizer: false, collectMetrics: false });
      const state = transform.init({});
      const statistics: LayerStatistics = { a: tf.ones([8]), g: tf.tensor1d(g), rows: 12, samples: 3, step: 0 };
      const grads = { 'conv/kernel': tf.ones([2, 2, 2, 4]) };
      const result = applyTransform(transform, grads, state, { extras: { statistics: { conv: statistics } } });
      const expected = updateInverseFactor64(identity(4), g.map((x) => x * expectedScale), 'exact', 0.95);
      expect(relativeError(inverseFactor64(factorsOf(result.state, 'conv').outputInverse), expected)).toBeLessThan(1e-5);
      tf.dispose([statistics.a, statistics.g, grads['conv/kernel'], result.updates['conv/kernel']!, ...Object.values(factorsOf(result.state, 'conv'))]);
    }
  });

  it('resets a factor that overflows to the identity and counts it', () => {
    // (1/γ)·F⁻¹ with F⁻¹ = 1e38·I and γ = 0.1 overflows float32 (a huge v no longer does: v is scaled).
    const transform = mkorPreconditioner([conv], { factorUpdateInterval: 1, stabilizer: false, form: 'exact', gamma: 0.1 });
    const fresh = transform.init({});
    const huge = tf.tidy(() => tf.mul(tf.eye(8), 1e38) as tf.Tensor2D);
    let state: typeof fresh = { ...fresh, layers: { conv: { ...fresh.layers.conv!, block: { ...factorsOf(fresh, 'conv'), inputInverse: huge } } } };
    tf.dispose(factorsOf(fresh, 'conv').inputInverse as tf.Tensor2D);
    const statistics: LayerStatistics = { a: tf.fill([8], 1e-3), g: tf.ones([4]), rows: 1, samples: 1, step: 0 };
    const grads = { 'conv/kernel': tf.ones([2, 2, 2, 4]) };
    const result = applyTransform(transform, grads, state, { extras: { statistics: { conv: statistics } } });
    state = result.state;
    expect(state.metrics?.events.reset).toEqual(['conv']);
    expect(state.totals.events.reset).toBe(1);
    expect(relativeError(inverseFactor64(factorsOf(state, 'conv').inputInverse), identity(8))).toBe(0);
    expect(Array.from(result.updates['conv/kernel']!.dataSync()).every(Number.isFinite)).toBe(true);
    tf.dispose([statistics.a, statistics.g, grads['conv/kernel'], result.updates['conv/kernel']!, ...Object.values(factorsOf(state, 'conv'))]);
  });

  it('refuses bad options, layers and statistics clearly', () => {
    expect(() => mkorPreconditioner([layer], { gamma: 1 })).toThrow(/gamma must be \(0, 1\)/);
    expect(() => mkorPreconditioner([layer], { form: 'other' as never })).toThrow(/form must be one of/);
    expect(() => mkorPreconditioner([layer], { factorUpdateInterval: 0 })).toThrow(/factorUpdateInterval/);
    expect(() => mkorPreconditioner([layer], { stabilizer: { epsilon: -1, zeta: 0.1, norm: 'inf' } })).toThrow(/epsilon/);
    expect(() => mkorPreconditioner([layer], { typo: 1 } as never)).toThrow(/unknown option 'typo'/);
    expect(() => mkorPreconditioner([{ ...layer, kernelShape: [4, 3] }])).toThrow(/does not hold 5×3/);
    expect(() => mkorPreconditioner([layer, layer])).toThrow(/listed twice/);
    const transform = mkorPreconditioner([layer]);
    const state = transform.init({});
    const statistics: LayerStatistics = { a: tf.ones([4]), g: tf.ones([3]), rows: 1, samples: 1, step: 0 };
    const grads = { 'dense/kernel': tf.ones([5, 3]), 'dense/bias': tf.ones([3]) };
    expect(() => applyTransform(transform, grads, state, { extras: { statistics: { dense: statistics } } })).toThrow(/a of length 4 .* expected 5 and 3/);
    tf.dispose([statistics.a, statistics.g, ...Object.values(grads), ...Object.values(factorsOf(state, 'dense'))]);
  });
});

describe('mkorPreconditioner with low-rank factors', () => {
  const wide: SecondOrderLayer = { name: 'wide', kind: 'dense', gradientCount: 'rows', kernelName: 'wide/kernel', biasName: 'wide/bias', inputDim: 40, outputDim: 6, kernelShape: [40, 6] };

  function run(options: Parameters<typeof mkorPreconditioner>[1], steps: number) {
    const transform = mkorPreconditioner([wide], { factorUpdateInterval: 1, ...options });
    let state = transform.init({});
    const updates: number[][] = [];
    for (let step = 0; step < steps; step++) {
      const statistics: LayerStatistics = {
        a: tf.tensor1d(seeded(40, 10 * step)),
        g: tf.tensor1d(Array.from(seeded(6, 10 * step + 1), (v) => v * 0.1)),
        rows: 8,
        samples: 8,
        step,
      };
      const grads = { 'wide/kernel': tf.tensor2d(seeded(240, 10 * step + 2), [40, 6]), 'wide/bias': tf.tensor1d(seeded(6, 10 * step + 3)) };
      const result = applyTransform(transform, grads, state, { extras: { statistics: { wide: statistics } } });
      state = result.state;
      updates.push([...result.updates['wide/kernel']!.dataSync(), ...result.updates['wide/bias']!.dataSync()]);
      tf.dispose([statistics.a, statistics.g, ...Object.values(grads), ...Object.values(result.updates)]);
    }
    return { state, updates };
  }

  it('equals the dense factors while the window holds every refresh, then truncates and stays finite', () => {
    const before = tf.memory().numTensors;
    const dense = run({ factors: 'dense' }, 8);
    const lowRank = run({ factors: 'low-rank', rank: 8 }, 8);
    dense.updates.forEach((u, i) => {
      const v = lowRank.updates[i]!;
      const error = Math.hypot(...u.map((x, k) => x - v[k]!)) / Math.hypot(...u);
      expect(error, `step ${i}`).toBeLessThan(1e-4);
    });
    expect(lowRank.state.totals.events.truncated).toBe(0);
    expect(isLowRank(factorsOf(lowRank.state, 'wide').inputInverse)).toBe(true);
    const small = run({ factors: 'low-rank', rank: 3 }, 8);
    expect(small.state.totals.events.truncated).toBe(5);
    expect(small.updates.every((u) => u.every(Number.isFinite))).toBe(true);
    const input = inverseFactor64(factorsOf(small.state, 'wide').inputInverse);
    expect(input.data.every(Number.isFinite)).toBe(true);
    for (const s of [dense.state, lowRank.state, small.state]) tf.dispose(tensorsIn(s));
    expect(tf.memory().numTensors).toBe(before);
  });

  it("chooses per factor with 'auto' (low-rank above 4 × rank) and refuses low-rank with the reference preset", () => {
    const before = tf.memory().numTensors;
    const { state } = run({ factors: 'auto', rank: 8 }, 1);
    // R⁻¹ is 41 × 41 (> 32): low-rank; L⁻¹ is 6 × 6: dense.
    expect(isLowRank(factorsOf(state, 'wide').inputInverse)).toBe(true);
    expect(isLowRank(factorsOf(state, 'wide').outputInverse)).toBe(false);
    tf.dispose(tensorsIn(state));
    expect(() => mkorPreconditioner([wide], { preset: 'reference', factors: 'low-rank' })).toThrow(
      "mkorPreconditioner: the reference preset's reset rule reads the largest entry of each factor, which needs factors: 'dense', got 'low-rank'",
    );
    expect(() => mkorPreconditioner([wide], { rank: 0 })).toThrow('mkorPreconditioner: rank must be an integer in [1, ∞), got 0');
    expect(tf.memory().numTensors).toBe(before);
  });
});
