/** What the fault-injection tests share: Fashion-MNIST rows as tensors, and a seeded MLP. */
import { loadFashionMnist, splitToTensors } from '@mkor/datasets';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll } from 'vitest';

/**
 * The first `rows` Fashion-MNIST training images (flattened to 784) and one-hot labels, created
 * before the tests of the calling file and disposed after them; read `.x` and `.y` inside tests.
 */
export function fashionRows(rows: number): { x: tf.Tensor; y: tf.Tensor2D } {
  const data = loadFashionMnist({ trainLimit: rows, testLimit: 10 });
  const train = {} as { x: tf.Tensor; y: tf.Tensor2D };
  beforeAll(() => Object.assign(train, splitToTensors(data.train, { flatten: true })));
  afterAll(() => tf.dispose([train.x, train.y]));
  return train;
}

/** A 784-`hidden`-10 ReLU MLP with seeded initial weights (`seed`, `seed + 1`). */
export function mlp(hidden: number, seed: number, outputActivation?: 'softmax'): tfl.Sequential {
  return tfl.sequential({
    layers: [
      tfl.layers.dense({ units: hidden, activation: 'relu', inputShape: [784], kernelInitializer: tfl.initializers.glorotUniform({ seed }) }),
      tfl.layers.dense({ units: 10, ...(outputActivation === undefined ? {} : { activation: outputActivation }), kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + 1 }) }),
    ],
  });
}
