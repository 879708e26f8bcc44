import type { LayerStatistics, SecondOrderLayer } from '@mkor/capture';
import { applyTransform, tensorsIn } from '@mkor/core';
import { sgd } from '@mkor/first-order';
import {
  FIXTURE_LAYERS,
  FIXTURE_ROWS as ROWS,
  FIXTURE_SAMPLES as SAMPLES,
  type Matrix64,
  combine,
  dampedInverse64,
  expectStepTimings,
  fixtureGradients as gradientsOf,
  forEachFixtureStep,
  foldBias64,
  fromTensor,
  frobeniusNorm,
  gradientMatrix64,
  identity,
  inverse,
  kfacPrecondition64,
  klClipFactor64,
  matrix,
  relativeError,
  rowMean64,
  scale,
  secondMoment64,
  seeded,
} from '@mkor/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import type { BlockPreconditionerState } from '@mkor/second-order';

import type { KfacLayerState } from './block';
import { type KfacOptions, kfac, kfacPreconditioner } from './kfac';

const U = 2 ** -24;
const LAYERS: readonly SecondOrderLayer[] = FIXTURE_LAYERS;

/** One layer's KFAC state in a preconditioner's state. */
function layerOf(state: BlockPreconditionerState, name: string): KfacLayerState {
  return state.layers[name]!.block as KfacLayerState;
}

/** One step's statistics of a layer from seeded rows, as float32 tensors (what a capture hands over). */
function statisticsOf(layer: SecondOrderLayer, step: number, seed: number): LayerStatistics {
  const x = matrix(ROWS, layer.inputDim, seeded(ROWS * layer.inputDim, seed));
  const dy = matrix(ROWS, layer.outputDim, seeded(ROWS * layer.outputDim, seed + 1));
  return {
    a: tf.tensor1d(Float32Array.from(rowMean64(x))),
    g: tf.tensor1d(Float32Array.from(rowMean64(dy))),
    rows: ROWS,
    samples: SAMPLES,
    step,
    covariance: { a: tf.tensor2d(Float32Array.from(secondMoment64(x).data), [layer.inputDim, layer.inputDim]), g: tf.tensor2d(Float32Array.from(secondMoment64(dy).data), [layer.outputDim, layer.outputDim]) },
  };
}

function disposeStatistics(s: LayerStatistics): void {
  tf.dispose([s.a, s.g, ...(s.covariance === undefined ? [] : [s.covariance.a, s.covariance.g])]);
}

/** An upper bound of the 2-norm condition number of `F + λI`: `‖F + λI‖_F ‖(F + λI)⁻¹‖_F`. */
function conditionBound(factor: Matrix64, damping: number): number {
  const damped = combine(1, factor, damping, identity(factor.rows));
  return frobeniusNorm(damped) * frobeniusNorm(inverse(damped));
}

interface Mirror {
  inputFactor: Matrix64;
  outputFactor: Matrix64;
  inputInverse: Matrix64;
  outputInverse: Matrix64;
  /** Worst condition bound of the factors inverted so far. */
  condition: number;
}

/** KFAC's options with plain numbers (the mirror does not follow schedules). */
type NumericKfacOptions = KfacOptions & { gamma?: number; damping?: number; factorUpdateInterval?: number; inverseInterval?: number };

const cases: { title: string; options: NumericKfacOptions }[] = [
  { title: 'KL-clip, gradientScale sum', options: { gamma: 0.9, damping: 0.05, inverseInterval: 2, scaling: 'kl-clip', learningRate: 0.1, klClip: 1e-3 } },
  { title: 'rescale, gradientScale mean', options: { gamma: 0.8, damping: 0.1, inverseInterval: 3, scaling: 'frobenius', gradientScale: 'mean' } },
  { title: 'no scaling, factors every 2 steps', options: { damping: 0.05, factorUpdateInterval: 2, inverseInterval: 2, scaling: 'none', gradientScale: 'mean' } },
];

describe('kfacPreconditioner against a float64 mirror', () => {
  it.each(cases)('$title: factors, inverses and updates over 6 steps', ({ options }) => {
    const gamma = options.gamma ?? 0.95;
    const damping = options.damping ?? 0.001;
    const inverseInterval = options.inverseInterval ?? 10;
    const factorInterval = options.factorUpdateInterval ?? 1;
    const before = tf.memory().numTensors;
    const transform = kfacPreconditioner(LAYERS, options);
    let state = transform.init({});
    const mirrors = new Map<string, Mirror>();
    forEachFixtureStep(6, statisticsOf, (step, statistics, grads) => {
      const result = applyTransform(transform, grads, state, { extras: { statistics } });
      state = result.state;

      const pairs: { layer: SecondOrderLayer; update: Matrix64; gradient: Matrix64 }[] = [];
      for (const layer of LAYERS) {
        const s = statistics[layer.name]!;
        if (step % factorInterval === 0) {
          const count = (options.gradientScale ?? 'sum') === 'mean' ? 1 : layer.kind === 'conv2d' ? SAMPLES : ROWS;
          const covarianceA = fromTensor(s.covariance!.a);
          const freshInput = layer.biasName === undefined ? covarianceA : foldBias64(covarianceA, s.a.dataSync());
          const freshOutput = scale(fromTensor(s.covariance!.g), count * count);
          const old = mirrors.get(layer.name);
          const inputFactor = old === undefined ? freshInput : combine(gamma, old.inputFactor, 1 - gamma, freshInput);
          const outputFactor = old === undefined ? freshOutput : combine(gamma, old.outputFactor, 1 - gamma, freshOutput);
          mirrors.set(layer.name, { ...(old ?? { inputInverse: identity(1), outputInverse: identity(1), condition: 1 }), inputFactor, outputFactor });
        }
        const m = mirrors.get(layer.name)!;
        if (step % inverseInterval === 0) {
          m.inputInverse = dampedInverse64(m.inputFactor, damping);
          m.outputInverse = dampedInverse64(m.outputFactor, damping);
          m.condition = Math.max(m.condition, conditionBound(m.inputFactor, damping), conditionBound(m.outputFactor, damping));
        }
        const gradient = gradientMatrix64(layer, grads);
        pairs.push({ layer, update: kfacPrecondition64(gradient, m.inputInverse, m.outputInverse), gradient });
      }
      const scaling = options.scaling ?? 'kl-clip';
      const nu = scaling === 'kl-clip' ? klClipFactor64(pairs, options.learningRate as number, options.klClip ?? 1e-3) : 1;
      for (const { layer, update, gradient } of pairs) {
        const m = mirrors.get(layer.name)!;
        const layerState = layerOf(state, layer.name);
        // Inversion (dampedInverse): relative error ≤ ~2·d·κ·u; the EMA adds a few u. The step
        // multiplies two inverses, so the update's relative error is bounded by about twice that:
        // 8·d·κ·u leaves a margin of ~2 on the worst case (κ bounded by ‖F+λI‖_F‖(F+λI)⁻¹‖_F).
        const d = Math.max(m.inputFactor.rows, m.outputFactor.rows);
        const tolerance = 8 * d * m.condition * U;
        // The EMA is a convex combination: each step rounds γ·F, (1−γ)·C and their sum (≤ 3u per
        // entry, count² one more), and earlier errors shrink by γ: ≤ 4u/(1−γ) ≤ 20u at γ = 0.8 … 0.95.
        expect(relativeError(fromTensor(layerState.inputFactor), m.inputFactor)).toBeLessThan(4 * U / (1 - gamma) + 4 * U);
        expect(relativeError(fromTensor(layerState.outputFactor), m.outputFactor)).toBeLessThan(4 * U / (1 - gamma) + 4 * U);
        expect(relativeError(fromTensor(layerState.inputInverse), m.inputInverse)).toBeLessThan(tolerance);
        expect(relativeError(fromTensor(layerState.outputInverse), m.outputInverse)).toBeLessThan(tolerance);
        const expected = scaling === 'frobenius' ? scale(update, frobeniusNorm(gradient) / frobeniusNorm(update)) : scale(update, nu);
        const kernel = result.updates[layer.kernelName]!;
        expect(kernel.shape).toEqual(layer.kernelShape);
        const bias = layer.biasName === undefined ? [] : Array.from(result.updates[layer.biasName]!.dataSync());
        const actual = matrix(expected.rows, expected.cols, [...kernel.dataSync(), ...bias]);
        expect(relativeError(actual, expected)).toBeLessThan(2 * tolerance);
      }
      const metrics = state.metrics!;
      expect(metrics.refreshed).toEqual(step % factorInterval === 0 ? LAYERS.map((l) => l.name) : []);
      expect(metrics.events.inverted).toEqual(step % inverseInterval === 0 ? LAYERS.map((l) => l.name) : []);
      expectStepTimings(metrics);
      if (scaling === 'kl-clip') expect(metrics.scaleFactors.dense).toBeCloseTo(nu, 4);
      return result.updates;
    });
    const totals = state.totals;
    expect(totals.refreshes).toBe(Math.ceil(6 / factorInterval));
    expect(totals.events).toEqual({ rejected: 0, inverted: Math.ceil(6 / inverseInterval) * LAYERS.length, inversionFailed: 0 });
    tf.dispose(tensorsIn(state));
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('kfacPreconditioner robustness', () => {
  it('keeps the previous inverse when a factor is not positive definite, and counts it', () => {
    const before = tf.memory().numTensors;
    const transform = kfacPreconditioner(LAYERS, { damping: 1e-3, scaling: 'none' });
    let state = transform.init({});
    const good = statisticsOf(LAYERS[1]!, 1, 7);
    const bad = statisticsOf(LAYERS[0]!, 1, 5);
    const negative = { ...bad, covariance: { a: tf.tidy(() => tf.mul(tf.eye(4), -3) as tf.Tensor2D), g: bad.covariance!.g } };
    const grads = gradientsOf(3);
    const result = applyTransform(transform, grads, state, { extras: { statistics: { dense: negative, conv: good } } });
    state = result.state;
    expect(state.metrics!.events.inversionFailed).toEqual(['dense']);
    expect(state.totals.events.inversionFailed).toBe(1);
    expect(fromTensor(layerOf(state, 'dense').inputInverse)).toEqual(identity(5));
    expect(Array.from(result.updates['dense/kernel']!.dataSync()).every(Number.isFinite)).toBe(true);
    tf.dispose(Object.values(result.updates).filter((u) => !Object.values(grads).includes(u)));
    tf.dispose([...Object.values(grads), negative.covariance.a, ...tensorsIn(state)]);
    disposeStatistics(good);
    disposeStatistics(bad);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses statistics without covariance, with a message that says how to capture them', () => {
    const transform = kfacPreconditioner(LAYERS, { scaling: 'none' });
    const state = transform.init({});
    const s = statisticsOf(LAYERS[0]!, 1, 1);
    const grads = gradientsOf(2);
    const { covariance, ...withoutCovariance } = s;
    void covariance;
    expect(() => applyTransform(transform, grads, state, { extras: { statistics: { dense: withoutCovariance } } })).toThrow(
      /kfacPreconditioner\(layer 'dense'\): the statistics carry no covariance: capture with \{ covariance: true \}/,
    );
    tf.dispose([...Object.values(grads), ...tensorsIn(state)]);
    disposeStatistics(s);
  });

  it('checks its options and layers', () => {
    expect(() => kfacPreconditioner(LAYERS, { damping: -1, scaling: 'none' })).toThrow(/kfacPreconditioner: damping must be \[0, ∞\), got -1/);
    expect(() => kfacPreconditioner(LAYERS, { gamma: 1, scaling: 'none' })).toThrow(/kfacPreconditioner: gamma must be \(0, 1\)/);
    expect(() => kfacPreconditioner(LAYERS, { inverseInterval: 0.5, scaling: 'none' })).toThrow(/inverseInterval must be an integer/);
    expect(() => kfacPreconditioner(LAYERS)).toThrow(/kfacPreconditioner: scaling 'kl-clip' needs the learningRate/);
    expect(() => kfacPreconditioner(LAYERS, { scaling: 'fancy' as 'none' })).toThrow(/scaling must be one of 'kl-clip', 'frobenius', 'summed-norms', 'none'/);
    expect(() => kfacPreconditioner([LAYERS[0]!, LAYERS[0]!], { scaling: 'none' })).toThrow(/layer 'dense' is listed twice/);
    expect(() => kfac({ layers: LAYERS, backend: undefined as never, scaling: 'none' })).toThrow(/kfac: backend must be a first-order Transform/);
  });

  it('kfac() skips a step whose gradients hold NaN, leaving factors and weights as they were', () => {
    const before = tf.memory().numTensors;
    const transform = kfac({ layers: LAYERS, backend: sgd({ learningRate: 0.1 }), learningRate: 0.1 });
    let state = transform.init({});
    const statistics = Object.fromEntries(LAYERS.map((layer, i) => [layer.name, statisticsOf(layer, 1, 40 + i)]));
    const grads = gradientsOf(9);
    const first = applyTransform(transform, grads, state, { extras: { statistics } });
    state = first.state;
    tf.dispose(Object.values(first.updates));
    const factorBefore = Array.from(layerOf(transform.preconditionerState(state)!, 'dense').inputFactor.dataSync());
    const poisoned = { ...grads, 'dense/kernel': tf.fill([4, 3], Number.NaN) };
    const second = applyTransform(transform, poisoned, state, { extras: { statistics } });
    state = second.state;
    expect(state.skippedSteps).toBe(1);
    expect(Object.values(second.updates).every((u) => Array.from(u.dataSync()).every((v) => v === 0))).toBe(true);
    expect(Array.from(layerOf(transform.preconditionerState(state)!, 'dense').inputFactor.dataSync())).toEqual(factorBefore);
    tf.dispose([...Object.values(second.updates), poisoned['dense/kernel'], ...Object.values(grads), ...tensorsIn(state)]);
    Object.values(statistics).forEach(disposeStatistics);
    expect(tf.memory().numTensors).toBe(before);
  });
});
