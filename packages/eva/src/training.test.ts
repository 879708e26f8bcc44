/**
 * EvaOptimizer on real TensorFlow.js models: model.fit on a Fashion-MNIST MLP (Adam and SGD
 * backends), exact checkpoint/resume, flat memory, and clean refusals.
 */
import { createCapture, prepareModel } from '@mkor/capture';
import { loadFashionMnist, splitToTensors } from '@mkor/datasets';
import { sgd } from '@mkor/first-order';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { EvaOptimizer } from './optimizer';

const data = loadFashionMnist({ trainLimit: 512, testLimit: 10 });
let train: { x: tf.Tensor; y: tf.Tensor2D };
beforeAll(() => {
  train = splitToTensors(data.train, { flatten: true });
});
afterAll(() => tf.dispose([train.x, train.y]));

function mlp(inputDim: number, hidden: number, seed = 3): tfl.Sequential {
  return tfl.sequential({
    layers: [
      tfl.layers.dense({ units: hidden, activation: 'relu', inputShape: [inputDim], kernelInitializer: tfl.initializers.glorotUniform({ seed }) }),
      tfl.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + 1 }) }),
    ],
  });
}

async function fitLosses(model: tfl.LayersModel, optimizer: tf.Optimizer, epochs: number): Promise<number[]> {
  model.compile({ optimizer, loss: 'categoricalCrossentropy' });
  const history = await model.fit(train.x, train.y, { epochs, batchSize: 128, shuffle: false, verbose: 0 });
  return history.history.loss as number[];
}

describe('EvaOptimizer with model.fit on a Fashion-MNIST MLP', () => {
  it('lowers the loss with the default Adam backend and KL-clip', async () => {
    const model = mlp(784, 32);
    const optimizer = new EvaOptimizer(model, { learningRate: 1e-2 });
    const losses = await fitLosses(model, optimizer, 4);
    expect(losses.every(Number.isFinite)).toBe(true);
    // Chance level is ln 10 ≈ 2.30; four epochs of 4 steps get well below the first epoch's mean.
    expect(losses.at(-1)!).toBeLessThan(0.75 * losses[0]!);
    expect(optimizer.skippedSteps).toBe(0);
    expect(optimizer.metrics?.scaleFactors).toHaveProperty(model.layers[0]!.name);
    expect(optimizer.getConfig()).toMatchObject({ damping: 0.03, gamma: 0.95, klClip: 0.001, backend: 'adam' });
    optimizer.dispose();
    model.dispose();
  });

  it('lowers the loss with an SGD backend (KL-clip with the same learning rate)', async () => {
    const model = mlp(784, 32, 11);
    const optimizer = new EvaOptimizer(model, { backend: sgd({ learningRate: 0.05 }), learningRate: 0.05 });
    const losses = await fitLosses(model, optimizer, 4);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses.at(-1)!).toBeLessThan(0.75 * losses[0]!);
    optimizer.dispose();
    model.dispose();
  });
});

describe('EvaOptimizer state and memory', () => {
  const x = (): tf.Tensor2D => tf.slice(tf.tensor2d(data.train.images.subarray(0, 32 * 784), [32, 784]), [0, 300], [32, 20]);
  const y = (): tf.Tensor2D => tf.tidy(() => tf.cast(tf.oneHot(tf.tensor1d(data.train.labels.subarray(0, 32), 'int32'), 10), 'float32') as tf.Tensor2D);

  it('resumes exactly from getWeights/setWeights, and keeps tf.memory flat', async () => {
    const [inputs, labels] = [tf.tidy(x), y()];
    const before = tf.memory().numTensors;
    const loss = (model: tfl.LayersModel) => () => tf.losses.softmaxCrossEntropy(labels, model.apply(inputs) as tf.Tensor) as tf.Scalar;
    const model = mlp(20, 8, 21);
    const options = { learningRate: 1e-2 } as const;
    const first = new EvaOptimizer(model, options);
    for (let i = 0; i < 3; i++) first.minimize(loss(model));
    const savedModel = model.getWeights().map((w) => tf.clone(w));
    const weights = await first.getWeights();
    const savedState = weights.map((w) => ({ name: w.name, tensor: tf.clone(w.tensor) }));
    // Every rank-0 entry is a number leaf (iterations, steps) made for this call; the state's tensors have rank ≥ 1.
    tf.dispose(weights.filter((w) => w.tensor.rank === 0).map((w) => w.tensor));
    const settled = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) first.minimize(loss(model));
    expect(tf.memory().numTensors).toBe(settled);
    const continued = model.getWeights().map((w) => Array.from(w.dataSync()));
    first.dispose();

    model.setWeights(savedModel);
    const resumed = new EvaOptimizer(model, options);
    await resumed.setWeights(savedState);
    for (let i = 0; i < 3; i++) resumed.minimize(loss(model));
    expect(model.getWeights().map((w) => Array.from(w.dataSync()))).toEqual(continued);
    resumed.dispose();
    tf.dispose([...savedModel, ...savedState.map((w) => w.tensor)]);
    model.dispose();
    expect(tf.memory().numTensors).toBeLessThanOrEqual(before);
    tf.dispose([inputs, labels]);
  });

  it('works with a createCapture registry and leaves it to the caller', () => {
    const [inputs, labels] = [tf.tidy(x), y()];
    const kernel = tf.variable(tf.randomNormal([20, 10], 0, 0.1, 'float32', 4));
    const bias = tf.variable(tf.zeros([10]));
    const before = tf.memory().numTensors;
    const capture = createCapture();
    const optimizer = new EvaOptimizer(capture, { learningRate: 1e-2 });
    const loss = () => tf.losses.softmaxCrossEntropy(labels, capture.dense('logits', inputs, kernel, bias)) as tf.Scalar;
    const losses: number[] = [];
    for (let i = 0; i < 10; i++) {
      const value = optimizer.minimize(loss, true)!;
      losses.push(value.dataSync()[0]!);
      value.dispose();
    }
    expect(losses.at(-1)!).toBeLessThan(losses[0]!);
    optimizer.dispose();
    expect(capture.statistics('logits')).toBeDefined();
    capture.release();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([kernel, bias, inputs, labels]);
  });

  it('refuses bad options before touching the model', () => {
    const model = mlp(20, 8);
    expect(() => new EvaOptimizer(model, { damping: 0 })).toThrow(/EvaOptimizer: damping must be \(0, ∞\)/);
    expect(() => new EvaOptimizer(model, { learningRate: Number.NaN })).toThrow(/EvaOptimizer: learningRate must be a positive finite number/);
    expect(() => new EvaOptimizer(model, { backend: {} as never })).toThrow(/eva: backend must be a first-order Transform/);
    prepareModel(model).release();
    model.dispose();
  });
});
