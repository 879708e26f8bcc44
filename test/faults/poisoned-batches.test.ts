/**
 * Fault injection: MKOR, KFAC and Eva trained through poisoned batches — NaN and Inf inputs, and
 * finite inputs scaled by 1e19 … 1e38 (gradients and statistics that overflow float32 inside the
 * step). After every batch the weights and every tensor of the optimizer's state must be finite,
 * the refused steps counted, training must carry on from clean batches, and nothing may leak.
 * The figures (cases tried, survived) are reported in docs/reliability.md.
 */
import { EvaOptimizer } from '@mkor/eva';
import { adam } from '@mkor/first-order';
import { KfacOptimizer } from '@mkor/kfac';
import { MkorOptimizer } from '@mkor/mkor';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';

import { fashionRows, mlp } from './fixtures';

const train = fashionRows(256);

type Refusing = tf.Optimizer & { readonly totals: { skippedSteps: number; refusedResults: number } };

const methods: [string, (model: tfl.LayersModel) => Refusing][] = [
  ['MKOR', (model) => new MkorOptimizer(model, { backend: adam({ learningRate: 1e-3 }), factorUpdateInterval: 1 })],
  ['KFAC', (model) => new KfacOptimizer(model, { learningRate: 1e-3, factorUpdateInterval: 1, inverseInterval: 1 })],
  ['Eva', (model) => new EvaOptimizer(model, { learningRate: 1e-3 })],
  ['Eva without rescale', (model) => new EvaOptimizer(model, { learningRate: 1e-3, scaling: 'none' })],
];

/** The poisons: what the inputs of one batch become. */
const poisons: [string, (x: tf.Tensor) => tf.Tensor][] = [
  ['NaN entry', (x) => tf.where(tf.equal(tf.reshape(tf.range(0, x.size), x.shape), 5), tf.fill(x.shape, Number.NaN), x)],
  ['Inf entry', (x) => tf.where(tf.equal(tf.reshape(tf.range(0, x.size), x.shape), 5), tf.fill(x.shape, Number.POSITIVE_INFINITY), x)],
  ...[1e19, 1e22, 1e25, 1e30, 1e38].map((scale): [string, (x: tf.Tensor) => tf.Tensor] => [`×${scale.toExponential()}`, (x) => tf.mul(x, scale)]),
];

async function allFinite(tensors: readonly tf.Tensor[]): Promise<boolean> {
  for (const t of tensors) {
    if (t.dtype === 'string') continue;
    const values = await t.data();
    for (const v of values as Float32Array) if (!Number.isFinite(v)) return false;
  }
  return true;
}

describe('poisoned batches', () => {
  for (const [method, create] of methods) {
    it(`${method}: every poison is refused or absorbed, weights and state stay finite, training carries on`, async () => {
      const model = mlp(32, 11);
      const optimizer = create(model);
      const batch = (i: number) => ({ x: tf.slice(train.x, [i * 32, 0], [32, 784]), y: tf.slice(train.y, [i * 32, 0], [32, 10]) });
      const loss = (x: tf.Tensor, y: tf.Tensor) => () => tf.losses.softmaxCrossEntropy(y, model.apply(x) as tf.Tensor) as tf.Scalar;
      const clean = batch(0);
      const cleanLoss = () => tf.tidy(() => loss(clean.x, clean.y)().dataSync()[0] as number);
      // Two clean steps first, so moments and factors exist.
      for (let i = 1; i <= 2; i++) {
        const { x, y } = batch(i);
        tf.tidy(() => {
          optimizer.minimize(loss(x, y));
        });
        tf.dispose([x, y]);
      }
      // getWeights makes scalars (the header, the number leaves) that stay the optimizer's until its
      // next call: take one first, so that every later call replaces as many as it makes.
      await optimizer.getWeights();
      const before = tf.memory().numTensors;
      const initialLoss = cleanLoss();
      let refused = 0;
      for (const [poison, apply] of poisons) {
        const { x, y } = batch(3);
        const poisoned = tf.tidy(() => apply(x));
        const skippedBefore = optimizer.totals.skippedSteps;
        tf.tidy(() => {
          optimizer.minimize(loss(poisoned, y));
        });
        tf.dispose([x, y, poisoned]);
        refused += optimizer.totals.skippedSteps - skippedBefore;
        expect(await allFinite(model.getWeights()), `${method}, ${poison}: weights`).toBe(true);
        const state = await optimizer.getWeights();
        expect(await allFinite(state.map((w) => w.tensor)), `${method}, ${poison}: optimizer state`).toBe(true);
        expect(tf.memory().numTensors, `${method}, ${poison}: tensors`).toBe(before);
      }
      // NaN and Inf inputs are always refused; the huge finite batches at least partly.
      expect(refused).toBeGreaterThanOrEqual(2);
      expect(optimizer.totals.skippedSteps).toBe(refused);
      // Clean batches still train the model.
      for (let i = 0; i < 6; i++) {
        const { x, y } = batch(4 + (i % 3));
        tf.tidy(() => {
          optimizer.minimize(loss(x, y));
        });
        tf.dispose([x, y]);
      }
      expect(cleanLoss()).toBeLessThan(initialLoss);
      optimizer.dispose();
      tf.dispose([clean.x, clean.y]);
      model.dispose();
    });
  }
});
