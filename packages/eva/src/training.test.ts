/**
 * EvaOptimizer on real TensorFlow.js models: model.fit on a Fashion-MNIST MLP (Adam and SGD
 * backends), exact checkpoint/resume, flat memory, and clean refusals. The scenarios are
 * `@mkor/testing`'s, shared with KfacOptimizer; what is Eva's own is checked here.
 */
import { createCapture, prepareModel } from '@mkor/capture';
import { loadFashionMnist } from '@mkor/datasets';
import { sgd } from '@mkor/first-order';
import { countReadBacks, expectExactResume, expectFitLowersLoss, expectRefusalsBeforePreparing, expectTrainsThroughRegistry } from '@mkor/testing';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';

import { EvaOptimizer, type EvaOptimizerOptions } from './optimizer';

const data = loadFashionMnist({ trainLimit: 512, testLimit: 10 });

describe('EvaOptimizer with model.fit on a Fashion-MNIST MLP', () => {
  it('lowers the loss with the default Adam backend and KL-clip', async () => {
    await expectFitLowersLoss(data.train, (model) => new EvaOptimizer(model, { learningRate: 1e-2 }), {
      inspect: (optimizer) => {
        expect(optimizer.skippedSteps).toBe(0);
        expect(optimizer.metrics?.step).toBe(15);
        expect(optimizer.getConfig()).toMatchObject({ damping: 0.03, gamma: 0.95, klClip: 0.001, backend: { name: 'adam', options: { learningRate: 1e-2 } }, learningRate: 1e-2, maxDim: null });
      },
    });
  });

  it('lowers the loss with an SGD backend (the KL-clip uses its learning rate)', async () => {
    await expectFitLowersLoss(data.train, (model) => new EvaOptimizer(model, { backend: sgd({ learningRate: 0.05 }) }), {
      seed: 11,
    });
  });
});

describe('EvaOptimizer state and memory', () => {
  it('resumes exactly from getWeights/setWeights, and keeps tf.memory flat', async () => {
    await expectExactResume(data.train, (model) => new EvaOptimizer(model, { learningRate: 1e-2 }));
  });

  it('works with a createCapture registry and leaves it to the caller', () => {
    expectTrainsThroughRegistry(
      data.train,
      () => createCapture(),
      (capture) => new EvaOptimizer(capture, { learningRate: 1e-2 }),
    );
  });

  it('refuses bad options before touching the model', () => {
    expectRefusalsBeforePreparing((model, options: EvaOptimizerOptions) => new EvaOptimizer(model, options), prepareModel, [
      [{ damping: 0 }, /EvaOptimizer: damping must be \(0, ∞\)/],
      [{ learningRate: Number.NaN }, /EvaOptimizer: learningRate must be a positive finite number/],
      [{ backend: {} as never, learningRate: 1e-2 }, /EvaOptimizer: backend must be a first-order Transform/],
      [{ backend: sgd({ learningRate: 0.1 }), learningRate: 0.1 }, /EvaOptimizer: learningRate 0.1 was given next to a backend with its own learning rate/],
    ]);
  });
});

describe("EvaOptimizer with decisions: 'device'", () => {
  it('trains to the same weights as with read-backs and reads nothing back during its steps', () => {
    const x = tf.tensor2d(data.train.images.slice(0, 16 * 784), [16, 784]);
    const y = tf.tidy(() => tf.cast(tf.oneHot(tf.tensor1d(Array.from(data.train.labels.slice(0, 16)), 'int32'), 10), 'float32'));
    const run = (decisions: 'read-back' | 'device') => {
      const model = tfl.sequential({ layers: [tfl.layers.dense({ units: 10, inputShape: [784], kernelInitializer: tfl.initializers.glorotUniform({ seed: 3 }) })] });
      const before = tf.memory().numTensors;
      const optimizer = new EvaOptimizer(model, { learningRate: 1e-2, decisions });
      const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
      let readBacks = 0;
      for (let step = 0; step < 5; step++) {
        const { value, grads } = optimizer.computeGradients(() => tf.losses.softmaxCrossEntropy(y, model.apply(x) as tf.Tensor) as tf.Scalar, variables);
        readBacks += countReadBacks(() => optimizer.applyGradients(grads));
        tf.dispose([value, ...Object.values(grads)]);
      }
      const weights = variables.flatMap((v) => Array.from(v.dataSync()));
      const totals = optimizer.totals;
      optimizer.dispose();
      expect(tf.memory().numTensors).toBe(before);
      model.dispose();
      return { weights, totals, readBacks };
    };
    const hosted = run('read-back');
    const device = run('device');
    expect(device.weights).toEqual(hosted.weights);
    expect(device.totals).toEqual(hosted.totals);
    expect(hosted.readBacks).toBeGreaterThan(0);
    expect(device.readBacks).toBe(0);
    tf.dispose([x, y]);
  });
});
