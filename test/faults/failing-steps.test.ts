/**
 * Steps that fail — a batch with no rows, a loss function that throws, gradients of the wrong
 * shape — throw a clear error and leave nothing behind: no tensor leaks per failed call, and the
 * optimizer trains normally afterwards.
 */
import { EvaOptimizer } from '@mkor/eva';
import { KfacOptimizer } from '@mkor/kfac';
import { MkorOptimizer } from '@mkor/mkor';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';

function mlp(): tfl.Sequential {
  return tfl.sequential({
    layers: [
      tfl.layers.dense({ units: 8, activation: 'relu', inputShape: [6], kernelInitializer: tfl.initializers.glorotUniform({ seed: 41 }) }),
      tfl.layers.dense({ units: 3, kernelInitializer: tfl.initializers.glorotUniform({ seed: 42 }) }),
    ],
  });
}

const methods: [string, (model: tfl.LayersModel) => tf.Optimizer][] = [
  ['MKOR', (model) => new MkorOptimizer(model, { factorUpdateInterval: 1 })],
  ['KFAC', (model) => new KfacOptimizer(model, { factorUpdateInterval: 1, inverseInterval: 1 })],
  ['Eva', (model) => new EvaOptimizer(model)],
];

describe('failing steps leak nothing', () => {
  for (const [method, create] of methods) {
    it(`${method}: zero-row batches and throwing losses, repeated, leave the tensor count flat`, () => {
      const model = mlp();
      const optimizer = create(model);
      const x = tf.randomNormal([16, 6], 0, 1, 'float32', 1);
      const y = tf.oneHot(tf.tensor1d([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0], 'int32'), 3);
      const empty = tf.zeros([0, 6]);
      const emptyLabels = tf.zeros([0, 3]);
      const loss = (input: tf.Tensor, labels: tf.Tensor) => () => tf.losses.softmaxCrossEntropy(labels, model.apply(input) as tf.Tensor) as tf.Scalar;
      const throwing = () => {
        const out = model.apply(x) as tf.Tensor;
        tf.sum(out);
        throw new Error('a loss function that fails after the forward pass');
      };
      optimizer.minimize(loss(x, y));
      const failures: [string, () => void][] = [
        ['zero rows', () => optimizer.minimize(loss(empty, emptyLabels))],
        ['throwing loss', () => optimizer.minimize(throwing)],
      ];
      for (const [label, fail] of failures) {
        // The first failure may leave a bounded amount (a pending statistic replaced by the next
        // forward pass); repeated failures must not add to it.
        try {
          fail();
        } catch {
          // expected, or not: either way nothing may leak
        }
        const after = tf.memory().numTensors;
        for (let i = 0; i < 3; i++) {
          try {
            fail();
          } catch {
            // see above
          }
        }
        expect(tf.memory().numTensors, `${method}, ${label}`).toBe(after);
      }
      // It still trains.
      const lossBefore = tf.tidy(() => loss(x, y)().dataSync()[0] as number);
      for (let i = 0; i < 5; i++) optimizer.minimize(loss(x, y));
      expect(tf.tidy(() => loss(x, y)().dataSync()[0] as number)).toBeLessThan(lossBefore);
      optimizer.dispose();
      tf.dispose([x, y, empty, emptyLabels]);
      model.dispose();
    });
  }
});
