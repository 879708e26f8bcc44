import type { LayerStatistics, SecondOrderLayer } from '@mkor/capture';
import { type Transform, applyTransform, tensorsIn } from '@mkor/core';
import {
  FIXTURE_LAYERS,
  FIXTURE_ROWS as ROWS,
  FIXTURE_SAMPLES as SAMPLES,
  type Matrix64,
  forEachFixtureStep,
  frobeniusNorm,
  gradientMatrix64,
  matrix,
  relativeError,
  scale,
  seeded,
} from '@mkor/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { type CurvatureBlock, blocksByLayer } from './block';
import { type BlockPreconditionerState, blockPreconditioner } from './preconditioner';

const LAYERS: readonly SecondOrderLayer[] = FIXTURE_LAYERS;
const U = 2 ** -24;

/** The toy block's state: the moving averages of `a²` and `g²` (diagonal Kronecker factors). */
interface DiagonalState {
  readonly input: tf.Tensor1D;
  readonly output: tf.Tensor1D;
}

/**
 * A block in a page, as a user would write one: diagonal Kronecker factors `A = EMA(a²)`,
 * `G = EMA(g²)` refreshed every `every` steps, `ΔW = [∇K; ∇b] / ((A + λ) ⊗ (G + λ))` entrywise,
 * and an event `large` on the device when a factor entry exceeds `limit`.
 */
function diagonalBlock(options: { every: number; damping: number; limit: number }): CurvatureBlock<DiagonalState> {
  return {
    kind: 'diagonal',
    needsCovariance: false,
    events: ['large'],
    init: (layer) => ({ input: tf.zeros([layer.foldedInputDim]), output: tf.zeros([layer.outputDim]) }),
    absorb: (state, statistics, { step }) => {
      if (statistics === undefined || step % options.every !== 0) return { state, consumed: false };
      const next = {
        input: tf.add(tf.mul(state.input, 0.5), tf.mul(tf.square(statistics.a), 0.5)) as tf.Tensor1D,
        output: tf.add(tf.mul(state.output, 0.5), tf.mul(tf.square(statistics.g), 0.5)) as tf.Tensor1D,
      };
      return { state: next, consumed: true, events: { large: tf.greater(tf.max(tf.concat([next.input, next.output])), options.limit) as tf.Scalar } };
    },
    precondition: (state, gradient) =>
      tf.div(gradient, tf.mul(tf.reshape(tf.add(state.input, options.damping), [-1, 1]), tf.reshape(tf.add(state.output, options.damping), [1, -1]))) as tf.Tensor2D,
  };
}

function statisticsOf(layer: SecondOrderLayer, step: number, seed: number): LayerStatistics {
  return {
    a: tf.tensor1d(seeded(layer.inputDim, seed)),
    g: tf.tensor1d(seeded(layer.outputDim, seed + 1)),
    rows: ROWS,
    samples: SAMPLES,
    step,
  };
}

/** The float64 mirror of the toy block in the loop, for one layer. */
interface Mirror {
  input: number[];
  output: number[];
}

describe('blockPreconditioner with a block written in a page', () => {
  for (const scaling of ['frobenius', 'none'] as const) {
    it(`folds the bias, scales g by the count, refreshes on the block's schedule and scales updates ('${scaling}'), against float64`, () => {
      const options = { every: 2, damping: 0.1, limit: 0.05 };
      const before = tf.memory().numTensors;
      const transform = blockPreconditioner(LAYERS, { blocks: diagonalBlock(options), scaling, gradientScale: 'sum' });
      let state = transform.init({});
      const mirrors = new Map<string, Mirror>(LAYERS.map((layer) => [layer.name, { input: new Array(layer.inputDim + (layer.biasName ? 1 : 0)).fill(0), output: new Array(layer.outputDim).fill(0) }]));
      let large = 0;
      forEachFixtureStep(5, statisticsOf, (step, statistics, grads) => {
        const result = applyTransform(transform, grads, state, { extras: { statistics } });
        state = result.state;
        const refreshed: string[] = [];
        for (const layer of LAYERS) {
          const s = statistics[layer.name]!;
          const m = mirrors.get(layer.name)!;
          if (step % options.every === 0) {
            const count = layer.kind === 'conv2d' ? SAMPLES : ROWS;
            const a = [...s.a.dataSync(), ...(layer.biasName === undefined ? [] : [1])];
            const g = Array.from(s.g.dataSync(), (v) => v * count);
            m.input = m.input.map((v, i) => 0.5 * v + 0.5 * (a[i] as number) ** 2);
            m.output = m.output.map((v, i) => 0.5 * v + 0.5 * (g[i] as number) ** 2);
            refreshed.push(layer.name);
            if (Math.max(...m.input, ...m.output) > options.limit) large += 1;
          }
          const gradient = gradientMatrix64(layer, grads);
          const raw = matrix(gradient.rows, gradient.cols, Array.from(gradient.data, (v, k) => {
            const i = Math.floor(k / gradient.cols);
            const j = k % gradient.cols;
            return v / (((m.input[i] as number) + options.damping) * ((m.output[j] as number) + options.damping));
          }));
          const expected: Matrix64 = scaling === 'frobenius' ? scale(raw, frobeniusNorm(gradient) / frobeniusNorm(raw)) : raw;
          const kernel = result.updates[layer.kernelName]!;
          expect(kernel.shape).toEqual(layer.kernelShape);
          const bias = layer.biasName === undefined ? [] : Array.from(result.updates[layer.biasName]!.dataSync());
          expect(relativeError(matrix(expected.rows, expected.cols, [...kernel.dataSync(), ...bias]), expected)).toBeLessThan(16 * U);
        }
        expect(state.metrics!.refreshed).toEqual(refreshed);
        expect(Object.keys(state.metrics!.scaleFactors)).toEqual(scaling === 'none' ? [] : LAYERS.map((l) => l.name));
        expect(state.totals.events.large).toBe(large);
        return result.updates;
      });
      expect(state.totals.refreshes).toBe(3);
      expect(large).toBeGreaterThan(0);
      tf.dispose(tensorsIn(state));
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('gives each layer the block blocksByLayer chooses, and counts the events of each kind', () => {
    const before = tf.memory().numTensors;
    const identityBlock: CurvatureBlock<null> = {
      kind: 'identity',
      needsCovariance: false,
      events: ['seen'],
      init: () => null,
      absorb: (state, statistics) => ({ state, consumed: statistics !== undefined, events: { seen: statistics !== undefined } }),
      precondition: (_state, gradient) => gradient,
    };
    const choice = blocksByLayer([{ match: (layer) => layer.kind === 'conv2d', block: identityBlock }], diagonalBlock({ every: 1, damping: 1, limit: 1e9 }));
    const transform = blockPreconditioner(LAYERS, { blocks: choice, scaling: 'none' });
    let state = transform.init({});
    forEachFixtureStep(2, statisticsOf, (_step, statistics, grads) => {
      const result = applyTransform(transform, grads, state, { extras: { statistics } });
      state = result.state;
      // The identity block passes the conv gradient through (reshaped back).
      expect(Array.from(result.updates['conv/kernel']!.dataSync())).toEqual(Array.from(grads['conv/kernel']!.dataSync()));
      expect(state.metrics!.events).toEqual({ large: [], seen: ['conv'] });
      return result.updates;
    });
    expect(state.totals).toEqual({ refreshes: 2, events: { large: 0, seen: 2 } });
    expect(state.layers.conv!.block).toBeNull();
    tf.dispose(tensorsIn(state));
    expect(tf.memory().numTensors).toBe(before);
  });

  it('reads back at most once a step, and nothing without device events and metrics', () => {
    const transform = (collectMetrics: boolean): Transform<BlockPreconditionerState> =>
      blockPreconditioner(LAYERS, { blocks: diagonalBlock({ every: 2, damping: 0.1, limit: 1 }), scaling: 'frobenius', collectMetrics });
    for (const collectMetrics of [true, false]) {
      const before = tf.memory().numTensors;
      const t = transform(collectMetrics);
      let state = t.init({});
      const reads: number[] = [];
      forEachFixtureStep(2, statisticsOf, (_step, statistics, grads) => {
        const original = tf.Tensor.prototype.dataSync;
        let count = 0;
        tf.Tensor.prototype.dataSync = function (this: tf.Tensor) {
          count += 1;
          return original.call(this);
        } as typeof original;
        try {
          const result = applyTransform(t, grads, state, { extras: { statistics } });
          state = result.state;
          reads.push(count);
          return result.updates;
        } finally {
          tf.Tensor.prototype.dataSync = original;
        }
      });
      // Step 0 refreshes (device events to read), step 1 does not; metrics add the scale factors to the same read.
      expect(reads).toEqual(collectMetrics ? [1, 1] : [1, 0]);
      tf.dispose(tensorsIn(state));
      expect(tf.memory().numTensors).toBe(before);
    }
  });

  it('refuses bad blocks, unknown and renamed options, undeclared events and missing statistics sizes, naming the caller', () => {
    const block = diagonalBlock({ every: 1, damping: 1, limit: 1 });
    expect(() => blockPreconditioner(LAYERS, { blocks: {} as never }, 'myMethod')).toThrow(/myMethod: blocks must be a CurvatureBlock/);
    expect(() => blockPreconditioner(LAYERS, { blocks: block, rescale: 'none' } as never, 'myMethod')).toThrow("myMethod: unknown option 'rescale' (renamed 'scaling')");
    expect(() => blockPreconditioner(LAYERS, { blocks: block, scaling: 'kl-clip' }, 'myMethod')).toThrow(/myMethod: scaling 'kl-clip' needs the learningRate/);
    expect(() => blockPreconditioner(LAYERS, { blocks: block, scaling: 'rescale' as never })).toThrow("blockPreconditioner: scaling 'rescale' is now 'frobenius' (or 'summed-norms', the authors' rescale)");
    expect(() => blockPreconditioner(LAYERS, { blocks: block, scaling: 'fancy' as never })).toThrow(/scaling must be one of 'kl-clip', 'frobenius', 'summed-norms', 'none'/);
    expect(() => blocksByLayer([{ match: 3 as never, block }], block)).toThrow('blocksByLayer: rules[0].match must be a function (layer) => boolean');

    const liar: CurvatureBlock<null> = {
      kind: 'diagonal',
      needsCovariance: false,
      events: ['large'],
      init: () => null,
      absorb: (state) => ({ state, consumed: false, events: { surprise: true } }),
      precondition: (_state, gradient) => gradient,
    };
    const lying = blockPreconditioner(LAYERS, { blocks: liar, scaling: 'none' }, 'myMethod');
    const state = lying.init({});
    const grads = { 'dense/kernel': tf.ones([4, 3]), 'dense/bias': tf.ones([3]) };
    expect(() => applyTransform(lying, grads, state, {})).toThrow("myMethod(layer 'dense'): block 'diagonal' reported event 'surprise', not among its events (large)");

    const checked = blockPreconditioner(LAYERS, { blocks: block, scaling: 'none' }, 'myMethod');
    const fresh = checked.init({});
    const wrong: LayerStatistics = { a: tf.ones([5]), g: tf.ones([3]), rows: 1, samples: 1, step: 1 };
    expect(() => applyTransform(checked, grads, fresh, { extras: { statistics: { dense: wrong } } })).toThrow(
      "myMethod(layer 'dense'): statistics have a of length 5 and g of length 3, expected 4 and 3",
    );
    tf.dispose([...Object.values(grads), wrong.a, wrong.g, ...tensorsIn(fresh)]);
  });
});
