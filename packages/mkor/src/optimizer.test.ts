import { prepareModel } from '@mkor/capture';
import type { Transform } from '@mkor/core';
import { sgd } from '@mkor/first-order';
import { type SwitchRule, lossRateRule } from '@mkor/hybrid-switch';
import { countReadBacks } from '@mkor/testing';
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
    expect(plain.getConfig()).toMatchObject({
      preset: 'default',
      backend: { name: 'adam', options: { learningRate: 1e-3 } },
      learningRate: 1e-3,
      hybrid: null,
      maxDim: null,
    });
    plain.dispose();
    const custom = new MkorOptimizer(net, { backend: sgd({ learningRate: 0.1 }), maxDim: 64, gamma: 0.5 });
    expect(custom.getConfig()).toMatchObject({ gamma: 0.5, backend: { name: 'sgd', options: { learningRate: 0.1 } }, learningRate: 0.1, hybrid: null, maxDim: 64 });
    custom.dispose();
    expect(tf.memory().numTensors).toBe(before);
    net.dispose();
  });

  it("refuses an unknown option, listing every option the class takes, its own (backend, maxDim, hybrid) too", () => {
    const net = model();
    let message = '';
    try {
      new MkorOptimizer(net, { maxDims: 64 } as never);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/^MkorOptimizer: unknown option 'maxDims'; known: /);
    const known = message.replace(/^.*known: /, '').split(', ');
    for (const key of ['backend', 'learningRate', 'maxDim', 'hybrid', 'gamma', 'factors', 'scaling', 'decisions']) expect(known).toContain(key);
    expect(new Set(known).size).toBe(known.length);
    prepareModel(net).release();
    net.dispose();
  });

  it('takes the learning rate once: next to a backend, learningRate is refused', () => {
    const net = model();
    expect(() => new MkorOptimizer(net, { backend: sgd({ learningRate: 0.1 }), learningRate: 0.1 })).toThrow(
      /MkorOptimizer: learningRate 0.1 was given next to a backend with its own learning rate \(0.1\); give it once, to the backend/,
    );
    const own: Transform<unknown> = { init: () => null, update: (updates, state) => ({ updates, state }) };
    expect(() => new MkorOptimizer(net, { backend: own, learningRate: 0.1 })).toThrow(/MkorOptimizer: learningRate 0.1 would be unused/);
    prepareModel(net).release();
    net.dispose();
  });

  it('gives MKOR-H a wall clock, so a rule per second works without one', () => {
    const net = model();
    const x = tf.ones([8, 4]);
    const optimizer = new MkorOptimizer(net, { hybrid: { rule: lossRateRule({ window: 2, per: 'second' }) } });
    for (let i = 0; i < 4; i++) optimizer.minimize(() => tf.mean(tf.square(net.apply(x) as tf.Tensor)) as tf.Scalar);
    expect(optimizer.iterations).toBe(4);
    optimizer.dispose();
    tf.dispose(x);
    net.dispose();
  });

  it('is rebuilt from its configuration without a model, and says so until a model is attached', async () => {
    const net = model();
    const x = tf.ones([8, 4]);
    const loss = () => tf.mean(tf.square(net.apply(x) as tf.Tensor)) as tf.Scalar;
    const original = new MkorOptimizer(net, { backend: sgd({ learningRate: 0.1, momentum: 0.9 }), preset: 'reference' });
    const config = JSON.parse(JSON.stringify(original.getConfig())) as tf.serialization.ConfigDict;
    original.dispose();
    const rebuilt = MkorOptimizer.fromConfig(MkorOptimizer, config) as MkorOptimizer;
    expect(rebuilt.getConfig()).toEqual(config);
    expect(() => rebuilt.minimize(loss)).toThrow(/MkorOptimizer: no model is attached.*call optimizer.attach\(model\)/);
    // It can still be saved before a model is attached (its header only, nothing restored yet).
    expect((await rebuilt.getWeights()).map((w) => w.name)).toEqual(['iter', 'mkor/checkpoint/format', 'mkor/checkpoint/config']);
    rebuilt.attach(net);
    expect(() => rebuilt.attach(net)).toThrow(/MkorOptimizer.attach: a model is attached already/);
    rebuilt.minimize(loss);
    expect(rebuilt.totals.refreshes).toBe(1);
    rebuilt.dispose();
    // A backend of your own cannot be saved: the rebuilt optimizer says what to do at its first step.
    const own: Transform<unknown> = { init: () => null, update: (updates, state) => ({ updates, state }) };
    const custom = new MkorOptimizer(net, { backend: own });
    const customConfig = custom.getConfig();
    custom.dispose();
    const unsaved = (MkorOptimizer.fromConfig(MkorOptimizer, customConfig) as MkorOptimizer).attach(net);
    expect(() => unsaved.minimize(loss)).toThrow(/cannot hold a backend transform of your own; build the optimizer yourself/);
    unsaved.dispose();
    tf.dispose(x);
    net.dispose();
  });
});


describe("MkorOptimizer with decisions: 'device'", () => {
  const x = () => tf.tidy(() => tf.randomNormal([16, 4], 0, 1, 'float32', 3));
  const y = () => tf.tidy(() => tf.randomNormal([16, 3], 0, 1, 'float32', 4));

  /** A layer wide enough for low-rank factors (`factors: 'auto'`, d > 128 on both sides). */
  const wide = () =>
    tfl.sequential({ layers: [tfl.layers.dense({ units: 130, inputShape: [140], kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) })] });

  /** Seven steps (a refresh every 2), the one at `poisonedStep` on NaN inputs; weights after each step. */
  async function train(decisions: 'read-back' | 'device', poisonedStep: number, make: () => tfl.Sequential = model) {
    const net = make();
    const [inputs, targets] = make === model ? [x(), y()] : [tf.randomNormal([16, 140], 0, 1, 'float32', 5), tf.randomNormal([16, 130], 0, 1, 'float32', 6)];
    const poisoned = tf.tidy(() => tf.mul(inputs, tf.scalar(Number.NaN)));
    const before = tf.memory().numTensors;
    const optimizer = new MkorOptimizer(net, { decisions, factorUpdateInterval: 2 });
    const variables = net.trainableWeights.map((w) => w.read() as tf.Variable);
    let stepReadBacks = 0;
    const weights: number[][] = [];
    for (let step = 0; step < 7; step++) {
      const input = step === poisonedStep ? poisoned : inputs;
      const { value, grads } = optimizer.computeGradients(() => tf.losses.meanSquaredError(targets, net.apply(input) as tf.Tensor) as tf.Scalar, variables);
      stepReadBacks += countReadBacks(() => optimizer.applyGradients(grads));
      tf.dispose([value, ...Object.values(grads)]);
      weights.push(variables.flatMap((v) => Array.from(v.dataSync())));
    }
    const { totals, metrics } = optimizer;
    // The same totals read asynchronously: no synchronous read-back (what webgpu needs).
    let reading: Promise<unknown> | undefined;
    const totalsReadBacks = countReadBacks(() => (reading = optimizer.readTotals()));
    const readTotals = await reading;
    optimizer.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([inputs, targets, poisoned]);
    net.dispose();
    return { weights, totals, readTotals, totalsReadBacks, metrics, stepReadBacks };
  }

  it('trains to the same weights as with read-backs and reads nothing back during its steps; readTotals reads asynchronously', async () => {
    const hosted = await train('read-back', -1);
    const device = await train('device', -1);
    expect(device.weights).toEqual(hosted.weights);
    expect(device.totals).toEqual(hosted.totals);
    expect(hosted.totals.refreshes).toBe(4);
    expect(hosted.stepReadBacks).toBeGreaterThanOrEqual(14);
    expect(device.stepReadBacks).toBe(0);
    for (const run of [hosted, device]) expect(run.readTotals).toEqual(run.totals);
    expect(device.totalsReadBacks).toBe(0);
    // The metrics leave out what only the device knows: the scale factors and device-side events.
    expect(Object.keys(hosted.metrics!.scaleFactors)).toHaveLength(1);
    expect(device.metrics!.scaleFactors).toEqual({});
  });

  it('does the same with low-rank factors', async () => {
    const hosted = await train('read-back', -1, wide);
    const device = await train('device', -1, wide);
    expect(device.weights).toEqual(hosted.weights);
    expect(device.totals).toEqual(hosted.totals);
    expect(device.stepReadBacks).toBe(0);
  });

  it('refuses a NaN step on the device: weights untouched on that step, counted like with read-backs', async () => {
    const hosted = await train('read-back', 3);
    const device = await train('device', 3);
    for (const run of [hosted, device]) {
      expect(run.weights[3]).toEqual(run.weights[2]);
      expect(run.weights[4]).not.toEqual(run.weights[3]);
      expect(run.weights.flat().every(Number.isFinite)).toBe(true);
    }
    // Up to the refused step both are the same; after it the device run's step counters (Adam's t,
    // the refresh schedule) have advanced by one, so the weights differ slightly.
    expect(device.weights.slice(0, 4)).toEqual(hosted.weights.slice(0, 4));
    expect(device.totals).toEqual({ ...hosted.totals, refreshes: device.totals.refreshes });
    expect(device.totals.skippedSteps).toBe(1);
    expect(device.readTotals).toEqual(device.totals);
    expect(device.stepReadBacks).toBe(0);
  });

  it('runs MKOR-H too: stepped by minimizeAsync it reads nothing back synchronously, and its switch sees the same losses', async () => {
    /** Switches at the 5th step, recording the losses it saw. */
    const recording: SwitchRule<{ losses: number[] }> = {
      init: () => ({ losses: [] }),
      observe: (state, { step, loss }) => ({ state: { losses: [...state.losses, loss ?? Number.NaN] }, switchNow: step >= 4 }),
    };
    const run = async (decisions: 'read-back' | 'device') => {
      const net = model();
      const [inputs, targets] = [x(), y()];
      const before = tf.memory().numTensors;
      const optimizer = new MkorOptimizer(net, { decisions, factorUpdateInterval: 2, hybrid: { rule: recording } });
      const loss = () => tf.losses.meanSquaredError(targets, net.apply(inputs) as tf.Tensor) as tf.Scalar;
      let readBacks = 0;
      for (let step = 0; step < 8; step++) {
        if (decisions === 'read-back') optimizer.minimize(loss);
        else {
          let stepping: Promise<unknown> | undefined;
          readBacks += countReadBacks(() => (stepping = optimizer.minimizeAsync(loss)));
          await stepping;
        }
      }
      const losses = ((optimizer.currentState!.inner[0] as { rule: { losses: number[] } }).rule).losses;
      const result = { weights: net.getWeights().map((w) => Array.from(w.dataSync())), switchedAtStep: optimizer.switchedAtStep, losses, readBacks, totals: await optimizer.readTotals() };
      optimizer.dispose();
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([inputs, targets]);
      net.dispose();
      return result;
    };
    const hosted = await run('read-back');
    const device = await run('device');
    expect(device.readBacks).toBe(0);
    expect(hosted.switchedAtStep).toBe(4);
    expect(device.switchedAtStep).toBe(4);
    expect(device.losses).toHaveLength(5);
    expect(device.losses).toEqual(hosted.losses);
    expect(device.weights).toEqual(hosted.weights);
    expect(device.totals).toEqual(hosted.totals);
  });

  it('refuses an unknown value', () => {
    const net = model();
    expect(() => new MkorOptimizer(net, { decisions: 'gpu' as never })).toThrow("MkorOptimizer: decisions must be one of 'read-back', 'device'");
    net.dispose();
  });
});
