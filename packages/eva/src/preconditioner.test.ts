import type { LayerStatistics, SecondOrderLayer } from '@mkor/capture';
import { applyTransform, tensorsIn } from '@mkor/core';
import { sgd } from '@mkor/first-order';
import {
  FIXTURE_LAYERS,
  FIXTURE_ROWS as ROWS,
  FIXTURE_SAMPLES as SAMPLES,
  type Matrix64,
  evaPrecondition64,
  expectStepTimings,
  fixtureGradients as gradientsOf,
  forEachFixtureStep,
  frobeniusNorm,
  gradientMatrix64,
  klClipFactor64,
  kroneckerSolve64,
  matrix,
  scale,
  seeded,
} from '@mkor/testing';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { evaPrecondition } from './block';
import { type EvaOptions, eva, evaPreconditioner } from './eva';

const U = 2 ** -24;

/** max |actual − expected| over the entries. */
function maxDifference(actual: tf.Tensor | Matrix64, expected: Matrix64): number {
  const values = actual instanceof tf.Tensor ? actual.dataSync() : actual.data;
  return Math.max(0, ...Array.from(expected.data, (e, i) => Math.abs((values[i] as number) - e)));
}

/**
 * The closed form `(M − c·a gᵀ)/λ` has `|c|·‖a gᵀ‖_F ≤ ‖M‖_F` (Cauchy–Schwarz on `aᵀMg`), so each
 * entry is a difference of terms bounded by `‖M‖_F/λ`; float32 rounds the dot products (d_in·d_out
 * terms), norms and the outer product: an absolute error of at most `~(d_in + d_out + 4)·u·‖M‖_F/λ`.
 * The bound used is 4× that.
 */
function closedFormTolerance(rows: number, cols: number, gradientNorm: number, damping: number): number {
  return 4 * (rows * cols + 4) * U * (gradientNorm / damping);
}

/**
 * The float64 references: Gauss–Jordan on `aaᵀ ⊗ ggᵀ + λI` loses about κ·u₆₄ relative
 * (u₆₄ = 2⁻⁵³), κ = (‖a‖²‖g‖² + λ)/λ its condition number, in each of ~(d_in·d_out + 4) terms of
 * size ≤ ‖M‖_F/λ. The bound used is 16× that; a wrong closed form is off by O(‖M‖_F/λ).
 */
function referenceTolerance(rows: number, cols: number, gradientNorm: number, damping: number, a: ArrayLike<number>, g: ArrayLike<number>): number {
  const squaredNorm = (v: ArrayLike<number>): number => Array.from(v).reduce((sum, x) => sum + x * x, 0);
  const condition = (squaredNorm(a) * squaredNorm(g) + damping) / damping;
  return 16 * (rows * cols + 4) * condition * 2 ** -53 * (gradientNorm / damping);
}

describe('evaPrecondition: the Sherman–Morrison closed form', () => {
  it('equals the explicit solve with (aaᵀ ⊗ ggᵀ + λI) on small sizes (property)', () => {
    fc.assert(
      fc.property(
        fc.record({
          rows: fc.integer({ min: 1, max: 4 }),
          cols: fc.integer({ min: 1, max: 4 }),
          seed: fc.integer({ min: 0, max: 2 ** 30 }),
          log10A: fc.double({ min: -1.5, max: 1.5, noNaN: true }),
          log10G: fc.double({ min: -1.5, max: 1.5, noNaN: true }),
          log10Damping: fc.double({ min: -2, max: 0, noNaN: true }),
        }),
        ({ rows, cols, seed, log10A, log10G, log10Damping }) => {
          const damping = 10 ** log10Damping;
          const a = Float32Array.from(seeded(rows, seed), (v) => v * 10 ** log10A);
          const g = Float32Array.from(seeded(cols, seed + 1), (v) => v * 10 ** log10G);
          const m = seeded(rows * cols, seed + 2);
          const before = tf.memory().numTensors;
          const [gradient, aT, gT] = [tf.tensor2d(m, [rows, cols]), tf.tensor1d(a), tf.tensor1d(g)];
          const result = evaPrecondition(gradient, aT, gT, damping);
          const gradient64 = matrix(rows, cols, m);
          const explicit = kroneckerSolve64(gradient64, a, g, damping);
          const tolerance = closedFormTolerance(rows, cols, frobeniusNorm(gradient64), damping);
          // The float64 closed form agrees with the explicit solve to float64 rounding.
          const reference = referenceTolerance(rows, cols, frobeniusNorm(gradient64), damping, a, g);
          expect(maxDifference(evaPrecondition64(gradient64, a, g, damping), explicit)).toBeLessThan(reference);
          expect(maxDifference(result, explicit)).toBeLessThan(tolerance);
          tf.dispose([gradient, aT, gT, result]);
          expect(tf.memory().numTensors).toBe(before);
        },
      ),
      { numRuns: 40 },
    );
  });
});

const LAYERS: readonly SecondOrderLayer[] = FIXTURE_LAYERS;

function statisticsOf(layer: SecondOrderLayer, step: number, seed: number): LayerStatistics {
  return { a: tf.tensor1d(seeded(layer.inputDim, seed)), g: tf.tensor1d(seeded(layer.outputDim, seed + 1)), rows: ROWS, samples: SAMPLES, step };
}

/** Eva's options with plain numbers (the mirror does not follow schedules). */
type NumericEvaOptions = EvaOptions & { gamma?: number; damping?: number };

const cases: { title: string; options: NumericEvaOptions }[] = [
  { title: 'KL-clip, gradientScale sum', options: { gamma: 0.9, damping: 0.03, scaling: 'kl-clip', learningRate: 0.1, klClip: 1e-3 } },
  { title: 'rescale, gradientScale mean', options: { gamma: 0.5, damping: 0.1, scaling: 'frobenius', gradientScale: 'mean' } },
  { title: 'no scaling', options: { damping: 0.3, scaling: 'none' } },
];

describe('evaPreconditioner against a float64 mirror', () => {
  it.each(cases)('$title: moving averages and updates over 5 steps', ({ options }) => {
    const gamma = options.gamma ?? 0.95;
    const damping = options.damping ?? 0.03;
    const before = tf.memory().numTensors;
    const transform = evaPreconditioner(LAYERS, options);
    let state = transform.init({});
    const averages = new Map<string, { a: Float64Array; g: Float64Array }>();
    forEachFixtureStep(5, statisticsOf, (step, statistics, grads) => {
      const result = applyTransform(transform, grads, state, { extras: { statistics } });
      state = result.state;
      const pairs: { layer: SecondOrderLayer; update: Matrix64; gradient: Matrix64 }[] = [];
      for (const layer of LAYERS) {
        const s = statistics[layer.name]!;
        const count = (options.gradientScale ?? 'sum') === 'mean' ? 1 : layer.kind === 'conv2d' ? SAMPLES : ROWS;
        const a = Float64Array.from([...s.a.dataSync(), ...(layer.biasName === undefined ? [] : [1])]);
        const g = Float64Array.from(s.g.dataSync(), (v) => v * count);
        const old = averages.get(layer.name);
        const blend = (x: Float64Array, y: Float64Array): Float64Array => x.map((v, i) => gamma * v + (1 - gamma) * (y[i] as number));
        const next = old === undefined ? { a, g } : { a: blend(old.a, a), g: blend(old.g, g) };
        averages.set(layer.name, next);
        const gradient = gradientMatrix64(layer, grads);
        pairs.push({ layer, update: evaPrecondition64(gradient, next.a, next.g, damping), gradient });
      }
      const scaling = options.scaling ?? 'kl-clip';
      const nu = scaling === 'kl-clip' ? klClipFactor64(pairs, options.learningRate as number, options.klClip ?? 1e-3) : 1;
      for (const { layer, update, gradient } of pairs) {
        const factor = scaling === 'frobenius' ? frobeniusNorm(gradient) / frobeniusNorm(update) : nu;
        const expected = scale(update, factor);
        const bias = layer.biasName === undefined ? [] : Array.from(result.updates[layer.biasName]!.dataSync());
        const actual = matrix(expected.rows, expected.cols, [...result.updates[layer.kernelName]!.dataSync(), ...bias]);
        // The closed-form bound (scaled by the factor), plus the factor's own relative error (a few
        // u per norm/dot over ≤ 39 entries: ≤ 64·u of the update).
        const tolerance = factor * closedFormTolerance(expected.rows, expected.cols, frobeniusNorm(gradient), damping) + 64 * U * frobeniusNorm(expected);
        expect(maxDifference(actual, expected)).toBeLessThan(tolerance);
      }
      const metrics = state.metrics!;
      expect(metrics.step).toBe(step);
      expectStepTimings(metrics);
      return result.updates;
    });
    expect(state.metrics?.step).toBe(4);
    tf.dispose(tensorsIn(state));
    expect(tf.memory().numTensors).toBe(before);
  });

  it('keeps only vectors: 2d numbers per layer', () => {
    const transform = evaPreconditioner(LAYERS, { scaling: 'none' });
    const state = transform.init({});
    expect(tensorsIn(state).map((t) => t.shape)).toEqual([[5], [3], [6], [2]]);
    tf.dispose(tensorsIn(state));
  });

  it('eva() skips a step whose gradients hold NaN; options are checked', () => {
    const before = tf.memory().numTensors;
    const transform = eva({ layers: LAYERS, backend: sgd({ learningRate: 0.1 }), learningRate: 0.1 });
    let state = transform.init({});
    const statistics = Object.fromEntries(LAYERS.map((layer, i) => [layer.name, statisticsOf(layer, 1, 40 + i)]));
    const grads = gradientsOf(9);
    const poisoned = { ...grads, 'conv/kernel': tf.fill([2, 1, 3, 2], Number.POSITIVE_INFINITY) };
    const result = applyTransform(transform, poisoned, state, { extras: { statistics } });
    state = result.state;
    expect(state.skippedSteps).toBe(1);
    expect(transform.preconditionerState(state)!.layers.dense!.statisticsStep).toBe(-1);
    tf.dispose([...Object.values(result.updates), poisoned['conv/kernel'], ...Object.values(grads), ...tensorsIn(state)]);
    Object.values(statistics).forEach((s) => tf.dispose([s.a, s.g]));
    expect(tf.memory().numTensors).toBe(before);

    expect(() => evaPreconditioner(LAYERS, { damping: 0, scaling: 'none' })).toThrow(/evaPreconditioner: damping must be \(0, ∞\), got 0/);
    expect(() => evaPreconditioner(LAYERS)).toThrow(/evaPreconditioner: scaling 'kl-clip' needs the learningRate/);
    expect(() => evaPreconditioner(LAYERS, { learningRate: -1 })).toThrow(/evaPreconditioner: learningRate must be \(0, ∞\), got -1/);
    expect(() => eva({ layers: LAYERS, backend: {} as never, scaling: 'none' })).toThrow(/eva: backend must be a first-order Transform/);
  });
});
