import type { Transform } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';

import { CaptureOptimizer } from './capture-optimizer';
import { type StatisticsByLayer, statisticsOf } from './statistics-channel';
import { prepareModel } from './prepare-model';

/** Plain gradient descent that records the statistics each step received. */
function recordingDescent(seen: StatisticsByLayer[]): Transform<null> {
  return {
    init: () => null,
    update: (updates, state, context) => {
      seen.push(statisticsOf(context, 'recordingDescent'));
      return { updates: Object.fromEntries(Object.entries(updates).map(([name, u]) => [name, tf.mul(u, -0.1)])), state };
    },
  };
}

function model(): tfl.Sequential {
  return tfl.sequential({ layers: [tfl.layers.dense({ units: 2, inputShape: [3], kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }) })] });
}

describe('CaptureOptimizer', () => {
  it('prepares a model, hands the captured statistics to each step, and undoes the preparation on dispose', () => {
    const net = model();
    const x = tf.ones([4, 3]);
    const before = tf.memory().numTensors;
    const seen: StatisticsByLayer[] = [];
    const optimizer = new CaptureOptimizer(net, { covariance: true }, () => recordingDescent(seen));
    const name = net.layers[0]!.name;
    optimizer.minimize(() => tf.sum(net.apply(x) as tf.Tensor) as tf.Scalar);
    expect(seen).toHaveLength(1);
    expect(seen[0]![name]).toEqual({ ...optimizer.capture.statistics(name), step: 1 });
    expect(seen[0]![name]?.covariance?.a.shape).toEqual([3, 3]);
    optimizer.dispose();
    expect(optimizer.capture.statistics(name)).toBeUndefined();
    expect(tf.memory().numTensors).toBe(before);
    // The preparation was undone: the model can be prepared again.
    prepareModel(net).release();
    tf.dispose(x);
    net.dispose();
  });

  it('passes caller statistics through applyGradientsWithContext, and leaves a borrowed registry alone', () => {
    const net = model();
    const x = tf.ones([4, 3]);
    const registry = prepareModel(net);
    const name = net.layers[0]!.name;
    const seen: StatisticsByLayer[] = [];
    const optimizer = new CaptureOptimizer(registry, {}, () => recordingDescent(seen));
    optimizer.minimize(() => tf.sum(net.apply(x) as tf.Tensor) as tf.Scalar);
    // Statistics given by the caller (a data-parallel trainer) replace the captured ones.
    const variable = tf.variable(tf.ones([2]));
    const gradient = tf.ones([2]);
    const statistics = { [name]: registry.statistics(name) };
    optimizer.applyGradientsWithContext({ [variable.name]: gradient }, { extras: { statistics } });
    expect(seen[1]).toEqual(statistics);
    expect(Array.from(variable.dataSync())).toEqual([0.9, 0.9].map((v) => Math.fround(v)));
    optimizer.dispose();
    expect(registry.statistics(name)).toBeDefined();
    registry.release();
    tf.dispose([variable, gradient, x]);
    net.dispose();
  });

  it('numbers statistics per layer so that numbering continues after a checkpoint, in a fresh capture', async () => {
    const x = tf.ones([4, 3]);
    const steps = (seen: StatisticsByLayer[], name: string) => seen.map((s) => s[name]?.step);
    const first = model();
    const seenFirst: StatisticsByLayer[] = [];
    const optimizer = new CaptureOptimizer(first, {}, () => recordingDescent(seenFirst));
    const name = first.layers[0]!.name;
    for (let i = 0; i < 3; i++) optimizer.minimize(() => tf.sum(first.apply(x) as tf.Tensor) as tf.Scalar);
    // A step without a new forward and backward pass sees the same (stale) statistics.
    const variable = tf.variable(tf.ones([2]));
    const gradient = tf.ones([2]);
    optimizer.applyGradients({ [variable.name]: gradient });
    expect(steps(seenFirst, name)).toEqual([1, 2, 3, 3]);
    const weights = await optimizer.getWeights();
    const serial = weights.find((w) => w.name === `state/checkpoint/statistics/${name}`);
    expect(serial?.tensor.dataSync()[0]).toBe(3);
    const saved = weights.map((w) => ({ name: w.name, tensor: tf.clone(w.tensor) }));
    tf.dispose(weights.filter((w) => w.name.includes('/checkpoint/') || w.name === 'iter').map((w) => w.tensor));
    optimizer.dispose();

    // A new process: a fresh capture whose own counter starts at 1 again, with the same layer name.
    const seenSecond: StatisticsByLayer[] = [];
    const resumed = new CaptureOptimizer(first, {}, () => recordingDescent(seenSecond));
    await resumed.setWeights(saved);
    resumed.minimize(() => tf.sum(first.apply(x) as tf.Tensor) as tf.Scalar);
    expect(resumed.capture.statistics(name)?.step).toBe(1);
    expect(steps(seenSecond, name)).toEqual([4]);
    resumed.dispose();
    tf.dispose([x, variable, gradient, ...saved.map((w) => w.tensor)]);
    first.dispose();
  });

  it('reports the config it was given through getConfig, as a copy ({} without one)', () => {
    const net = model();
    const before = tf.memory().numTensors;
    const plain = new CaptureOptimizer(net, {}, () => recordingDescent([]));
    expect(plain.getConfig()).toEqual({});
    plain.dispose();
    const config = { gamma: 0.95, backend: 'adam', maxDim: null };
    const configured = new CaptureOptimizer(net, {}, () => recordingDescent([]), { statePrefix: 'recording', config });
    const reported = configured.getConfig();
    expect(reported).toEqual(config);
    reported.gamma = 0.5;
    expect(configured.getConfig()).toEqual(config);
    configured.dispose();
    expect(tf.memory().numTensors).toBe(before);
    net.dispose();
  });

  it('undoes its preparation when the transform cannot be built', () => {
    const net = model();
    expect(() => new CaptureOptimizer(net, {}, () => {
      throw new TypeError('no transform');
    })).toThrow('no transform');
    prepareModel(net).release();
    net.dispose();
  });
});
