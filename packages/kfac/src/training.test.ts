/**
 * KfacOptimizer on real TensorFlow.js models: model.fit on a Fashion-MNIST MLP (Adam and SGD
 * backends), exact checkpoint/resume, flat memory, and clean refusals. The scenarios are
 * `@mkor/testing`'s, shared with EvaOptimizer; what is KFAC's own is checked here.
 */
import { createCapture, prepareModel } from '@mkor/capture';
import { loadFashionMnist } from '@mkor/datasets';
import { sgd } from '@mkor/first-order';
import { denseProblem, expectExactResume, expectFitLowersLoss, expectRefusalsBeforePreparing, expectTrainsThroughRegistry } from '@mkor/testing';
import { describe, expect, it } from 'vitest';

import { KfacOptimizer, type KfacOptimizerOptions } from './optimizer';

const data = loadFashionMnist({ trainLimit: 512, testLimit: 10 });

describe('KfacOptimizer with model.fit on a Fashion-MNIST MLP', () => {
  it('lowers the loss with the default Adam backend and KL-clip', async () => {
    await expectFitLowersLoss(data.train, (model) => new KfacOptimizer(model, { learningRate: 1e-2, damping: 0.01, inverseInterval: 4 }), {
      inspect: (optimizer) => {
        const layers = optimizer.capture.secondOrder.map((layer) => layer.name);
        expect(optimizer.totals).toMatchObject({ refreshes: 16, events: { inverted: 4 * layers.length, inversionFailed: 0, rejected: 0 }, skippedSteps: 0 });
        // The last step (15) folded in new covariances but did not invert (15 % 4 ≠ 0).
        expect(optimizer.metrics).toMatchObject({ step: 15, refreshed: layers, events: { inverted: [] } });
        expect(optimizer.getConfig()).toMatchObject({ damping: 0.01, gamma: 0.95, inverseInterval: 4, klClip: 0.001, backend: { name: 'adam', options: { learningRate: 1e-2 } }, learningRate: 1e-2, maxDim: null });
      },
    });
  });

  it('lowers the loss with an SGD backend (the KL-clip uses its learning rate)', async () => {
    await expectFitLowersLoss(
      data.train,
      (model) => new KfacOptimizer(model, { backend: sgd({ learningRate: 0.05 }), damping: 0.01, inverseInterval: 4 }),
      { seed: 11 },
    );
  });
});

describe('KfacOptimizer state and memory', () => {
  it('resumes exactly from getWeights/setWeights, and keeps tf.memory flat', async () => {
    await expectExactResume(
      data.train,
      (model) => new KfacOptimizer(model, { learningRate: 1e-2, inverseInterval: 2 }),
      (resumed) => expect(resumed.totals.refreshes).toBe(6),
    );
  });

  it('works with a createCapture registry (covariance on) and refuses one without covariance', () => {
    expectTrainsThroughRegistry(
      data.train,
      () => createCapture({ covariance: true }),
      (capture) => new KfacOptimizer(capture, { learningRate: 1e-2, inverseInterval: 1 }),
      (optimizer) => expect(optimizer.totals.events.inverted).toBe(10 * optimizer.capture.secondOrder.length),
    );

    const problem = denseProblem(data.train);
    const plain = createCapture();
    const refusing = new KfacOptimizer(plain, { learningRate: 1e-2 });
    expect(() => refusing.minimize(problem.loss(plain))).toThrow(/carry no covariance: capture with \{ covariance: true \}/);
    refusing.dispose();
    plain.release();
    problem.dispose();
  });

  it('refuses bad options before touching the model', () => {
    expectRefusalsBeforePreparing((model, options: KfacOptimizerOptions) => new KfacOptimizer(model, options), prepareModel, [
      [{ damping: -1 }, /KfacOptimizer: damping must be \[0, ∞\)/],
      [{ learningRate: 0 }, /KfacOptimizer: learningRate must be a positive finite number/],
      [{ backend: {} as never, learningRate: 1e-2 }, /KfacOptimizer: backend must be a first-order Transform/],
      [{ backend: sgd({ learningRate: 0.1 }), learningRate: 0.1 }, /KfacOptimizer: learningRate 0.1 was given next to a backend with its own learning rate/],
    ]);
  });
});
