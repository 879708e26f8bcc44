import { type Transform, applyTransform, tensorsIn } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { DEFAULT_LEARNING_RATE, resolveBackend } from './backend';
import { adam, sgd } from './optimizers';

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
    const resolved = resolveBackend('SomeOptimizer', {});
    expect(resolved.learningRate).toBe(DEFAULT_LEARNING_RATE);
    expect(DEFAULT_LEARNING_RATE).toBe(1e-3);
    expect(resolved.config).toEqual({ backend: 'adam', learningRate: 1e-3 });
    expect(oneStep(resolved.backend)).toEqual(oneStep(adam({ learningRate: 1e-3 })));
    expect(tf.memory().numTensors).toBe(before);
  });

  it('builds the default Adam with the learning rate given', () => {
    const before = tf.memory().numTensors;
    const resolved = resolveBackend('SomeOptimizer', { learningRate: 0.05 });
    expect(resolved.config).toEqual({ backend: 'adam', learningRate: 0.05 });
    expect(oneStep(resolved.backend)).toEqual(oneStep(adam({ learningRate: 0.05 })));
    expect(tf.memory().numTensors).toBe(before);
  });

  it('passes a backend given through as it is', () => {
    const backend = sgd({ learningRate: 0.1 });
    const resolved = resolveBackend('SomeOptimizer', { backend, learningRate: 0.1 });
    expect(resolved.backend).toBe(backend);
    expect(resolved.config).toEqual({ backend: 'custom', learningRate: 0.1 });
  });

  it('refuses a learning rate that is not a positive finite number, naming the caller', () => {
    for (const learningRate of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, '0.1' as unknown as number]) {
      expect(() => resolveBackend('KfacOptimizer', { learningRate })).toThrow(
        new RangeError(`KfacOptimizer: learningRate must be a positive finite number, got ${String(learningRate)}`),
      );
    }
  });
});
