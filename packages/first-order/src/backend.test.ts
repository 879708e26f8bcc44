import { type Transform, applyTransform, tensorsIn } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { DEFAULT_LEARNING_RATE, resolveBackend } from './backend';
import { type FirstOrderConfig, adam, adamw, firstOrderFromConfig, lamb, sgd } from './optimizers';

const mkorLike = { methodUsesLearningRate: false };
const kfacLike = { methodUsesLearningRate: true };

/** The updates of one step of `backend` on fixed parameters and gradients, read back. */
function oneStep(backend: Transform<unknown>): number[] {
  const params = { w: tf.tensor1d([0.5, -1, 2]) };
  const grads = { w: tf.tensor1d([0.25, -0.5, 3]) };
  const result = applyTransform(backend, grads, backend.init(params), { params });
  const values = Array.from(result.updates.w!.dataSync());
  tf.dispose([params.w, grads.w, result.updates.w!, ...tensorsIn(result.state)]);
  return values;
}

describe('resolveBackend', () => {
  it('defaults to adam({ learningRate: 1e-3 }) and reports it as such', () => {
    const before = tf.memory().numTensors;
    const resolved = resolveBackend('SomeOptimizer', {}, mkorLike);
    expect(resolved.learningRate).toBe(DEFAULT_LEARNING_RATE);
    expect(DEFAULT_LEARNING_RATE).toBe(1e-3);
    expect(resolved.config).toEqual({ backend: { name: 'adam', options: { learningRate: 1e-3 } }, learningRate: 1e-3 });
    expect(oneStep(resolved.backend)).toEqual(oneStep(adam({ learningRate: 1e-3 })));
    expect(tf.memory().numTensors).toBe(before);
  });

  it('builds the default Adam with the learning rate given', () => {
    const before = tf.memory().numTensors;
    const resolved = resolveBackend('SomeOptimizer', { learningRate: 0.05 }, mkorLike);
    expect(resolved.config).toEqual({ backend: { name: 'adam', options: { learningRate: 0.05 } }, learningRate: 0.05 });
    expect(oneStep(resolved.backend)).toEqual(oneStep(adam({ learningRate: 0.05 })));
    expect(tf.memory().numTensors).toBe(before);
  });

  it('passes a backend given through as it is, its learning rate the one source of truth', () => {
    const backend = sgd({ learningRate: 0.1, momentum: 0.9 });
    const resolved = resolveBackend('SomeOptimizer', { backend }, mkorLike);
    expect(resolved.backend).toBe(backend);
    expect(resolved.learningRate).toBe(0.1);
    expect(resolved.config).toEqual({ backend: { name: 'sgd', options: { learningRate: 0.1, momentum: 0.9 } }, learningRate: 0.1 });
    // A rate given twice could disagree: refused, whatever the method.
    for (const use of [mkorLike, kfacLike]) {
      expect(() => resolveBackend('SomeOptimizer', { backend, learningRate: 0.1 }, use)).toThrow(
        /SomeOptimizer: learningRate 0.1 was given next to a backend with its own learning rate \(0.1\); give it once, to the backend/,
      );
    }
  });

  it('takes the learning rate of a transform of your own only for a method that uses it', () => {
    const own: Transform<unknown> = { init: () => null, update: (updates, state) => ({ updates, state }) };
    const forKfac = resolveBackend('KfacOptimizer', { backend: own, learningRate: 0.02 }, kfacLike);
    expect(forKfac.learningRate).toBe(0.02);
    expect(forKfac.config).toEqual({ backend: 'custom', learningRate: 0.02 });
    expect(resolveBackend('MkorOptimizer', { backend: own }, mkorLike).config).toEqual({ backend: 'custom', learningRate: null });
    expect(() => resolveBackend('MkorOptimizer', { backend: own, learningRate: 0.02 }, mkorLike)).toThrow(
      /MkorOptimizer: learningRate 0.02 would be unused/,
    );
  });

  it('rebuilds a named optimizer from its configuration', () => {
    for (const backend of [sgd({ learningRate: 0.1, momentum: 0.5, nesterov: true }), adam({ learningRate: 0.01, beta1: 0.8 }), adamw({ learningRate: 0.01 }), lamb({ learningRate: 0.01, weightDecay: 0.1 })]) {
      const config = JSON.parse(JSON.stringify(backend.config)) as FirstOrderConfig;
      expect(oneStep(firstOrderFromConfig(config))).toEqual(oneStep(backend));
    }
    // A schedule cannot be held by a configuration.
    expect(sgd({ learningRate: (step) => 0.1 / (step + 1) }).config).toBeNull();
    expect(() => firstOrderFromConfig({ name: 'rmsprop' as never, options: {} })).toThrow(/firstOrderFromConfig: no optimizer named "rmsprop"/);
  });

  it('refuses a learning rate that is not a positive finite number, naming the caller', () => {
    for (const learningRate of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, '0.1' as unknown as number]) {
      expect(() => resolveBackend('KfacOptimizer', { learningRate }, kfacLike)).toThrow(
        new RangeError(`KfacOptimizer: learningRate must be a positive finite number, got ${String(learningRate)}`),
      );
    }
  });
});
