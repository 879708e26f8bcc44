import { prepareModel } from '@mkor/capture';
import { sgd } from '@mkor/first-order';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';

import { MkorOptimizer } from './optimizer';

function model(): tfl.Sequential {
  return tfl.sequential({ layers: [tfl.layers.dense({ units: 3, inputShape: [4], kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }) })] });
}

describe('MkorOptimizer options', () => {
  it('refuses a bad learning rate, naming the class, before touching the model', () => {
    const net = model();
    for (const learningRate of [0, -1e-3, Number.NaN]) {
      expect(() => new MkorOptimizer(net, { learningRate })).toThrow(
        new RangeError(`MkorOptimizer: learningRate must be a positive finite number, got ${String(learningRate)}`),
      );
    }
    // Nothing stayed wrapped: the model can be prepared again.
    prepareModel(net).release();
    net.dispose();
  });

  it('reports the resolved options, the learning rate, the backend, hybrid and maxDim in getConfig', () => {
    const net = model();
    const before = tf.memory().numTensors;
    const plain = new MkorOptimizer(net);
    expect(plain.getConfig()).toMatchObject({ preset: 'default', backend: 'adam', learningRate: 1e-3, hybrid: null, maxDim: null });
    plain.dispose();
    const custom = new MkorOptimizer(net, { backend: sgd({ learningRate: 0.1 }), learningRate: 0.1, maxDim: 64, gamma: 0.5 });
    expect(custom.getConfig()).toMatchObject({ gamma: 0.5, backend: 'custom', learningRate: 0.1, hybrid: null, maxDim: 64 });
    custom.dispose();
    expect(tf.memory().numTensors).toBe(before);
    net.dispose();
  });
});
