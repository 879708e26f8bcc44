/**
 * MKOR trains real TensorFlow.js models: an MLP with model.fit on Fashion-MNIST (every form and
 * the reference preset), a CNN (cpu backend: tfjs-backend-wasm 4.22 has no Conv2DBackpropFilter),
 * a hand-written transformer block on Fashion-MNIST rows as sequences, MKOR-H on a real run,
 * exact checkpoint/resume, NaN steps, 1,000 steps without a leak, and clean refusals.
 */
import { createCapture } from '@mkor/capture';
import { loadFashionMnist, splitToTensors } from '@mkor/datasets';
import { adam, sgd } from '@mkor/first-order';
import { lossRateRule, switchAtStep } from '@mkor/hybrid-switch';
import { type MkorBlockOptions, MkorOptimizer } from '@mkor/mkor';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const data = loadFashionMnist({ trainLimit: 1024, testLimit: 10 });
let train: { x: tf.Tensor; y: tf.Tensor2D };
beforeAll(() => {
  train = splitToTensors(data.train, { flatten: true });
});
afterAll(() => tf.dispose([train.x, train.y]));

function mlp(seed = 3): tfl.Sequential {
  return tfl.sequential({
    layers: [
      tfl.layers.dense({ units: 64, activation: 'relu', inputShape: [784], kernelInitializer: tfl.initializers.glorotUniform({ seed }) }),
      tfl.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + 1 }) }),
    ],
  });
}

async function fitLosses(model: tfl.LayersModel, optimizer: tf.Optimizer, x: tf.Tensor, y: tf.Tensor, epochs: number, batchSize: number): Promise<number[]> {
  model.compile({ optimizer, loss: 'categoricalCrossentropy' });
  const history = await model.fit(x, y, { epochs, batchSize, shuffle: false, verbose: 0 });
  return history.history.loss as number[];
}

describe('MKOR with model.fit on a Fashion-MNIST MLP', () => {
  const variants: [string, MkorBlockOptions][] = [
    ['exact', { form: 'exact' }],
    ['paper', { form: 'paper' }],
    ['reference form', { form: 'reference' }],
    ['reference preset', { preset: 'reference' }],
  ];
  for (const [name, options] of variants) {
    it(`lowers the loss (${name})`, async () => {
      const model = mlp();
      const optimizer = new MkorOptimizer(model, { ...options, backend: adam({ learningRate: 1e-3 }), factorUpdateInterval: 5 });
      const losses = await fitLosses(model, optimizer, train.x, train.y, 4, 128);
      expect(losses.every(Number.isFinite)).toBe(true);
      // Chance level is ln 10 ≈ 2.30; four epochs of 8 steps get well below it.
      expect(losses.at(-1)!).toBeLessThan(0.75 * losses[0]!);
      expect(optimizer.totals.refreshes).toBeGreaterThan(0);
      expect(optimizer.metrics?.scaleFactors).toHaveProperty(model.layers[0]!.name);
      optimizer.dispose();
      model.dispose();
    });
  }
});

describe('MKOR on a small CNN (cpu backend)', () => {
  let previous: string;
  beforeAll(async () => {
    previous = tf.getBackend();
    await tf.setBackend('cpu');
  });
  afterAll(async () => {
    await tf.setBackend(previous);
  });

  it('lowers the loss with Conv2D layers preconditioned', async () => {
    const images = tf.tensor4d(data.train.images.subarray(0, 256 * 784), [256, 28, 28, 1]);
    const labels = tf.tidy(() => tf.cast(tf.oneHot(tf.tensor1d(data.train.labels.subarray(0, 256), 'int32'), 10), 'float32'));
    const model = tfl.sequential({
      layers: [
        tfl.layers.conv2d({ filters: 8, kernelSize: 3, strides: 2, activation: 'relu', inputShape: [28, 28, 1], kernelInitializer: tfl.initializers.glorotUniform({ seed: 5 }) }),
        tfl.layers.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 6 }) }),
        tfl.layers.flatten(),
        tfl.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: 7 }) }),
      ],
    });
    const optimizer = new MkorOptimizer(model, { backend: adam({ learningRate: 3e-3 }), factorUpdateInterval: 2 });
    expect(optimizer.capture.secondOrder.map((l) => l.kind)).toEqual(['conv2d', 'conv2d', 'dense']);
    const losses = await fitLosses(model, optimizer, images, labels, 4, 64);
    expect(losses.at(-1)!).toBeLessThan(0.8 * losses[0]!);
    optimizer.dispose();
    model.dispose();
    tf.dispose([images, labels]);
  });
});

/** A one-block transformer over the 28 rows of an image (28 tokens of 28 pixels), hand-written. */
function transformerBlock(seed: number) {
  const capture = createCapture();
  const d = 32;
  let next = seed;
  const init = (shape: number[], name: string) => {
    next += 1;
    return tf.variable(tf.randomNormal(shape, 0, 1 / Math.sqrt(shape[0]!), 'float32', next), true, `${name}-${seed}`);
  };
  const v = {
    embed: init([28, d], 'embed'), q: init([d, d], 'q'), k: init([d, d], 'k'), value: init([d, d], 'v'),
    ff1: init([d, 2 * d], 'ff1'), ff2: init([2 * d, d], 'ff2'), out: init([d, 10], 'out'),
    gamma: tf.variable(tf.ones([d]), true, `gamma-${seed}`), beta: tf.variable(tf.zeros([d]), true, `beta-${seed}`),
  };
  const apply = (x: tf.Tensor): tf.Tensor => {
    const tokens = capture.dense('embed', x, v.embed); // [b, 28, d]: Dense on 3-D input
    const q = capture.dense('q', tokens, v.q);
    const k = capture.dense('k', tokens, v.k);
    const values = capture.dense('v', tokens, v.value);
    const attention = tf.softmax(tf.div(tf.matMul(q, k, false, true), Math.sqrt(d)));
    const mixed = tf.add(tokens, tf.matMul(attention, values));
    const moments = tf.moments(mixed, -1, true);
    const normed = tf.add(tf.mul(tf.div(tf.sub(mixed, moments.mean), tf.sqrt(tf.add(moments.variance, 1e-5))), v.gamma), v.beta);
    const hidden = tf.relu(capture.dense('ff1', normed, v.ff1));
    const block = tf.add(normed, capture.dense('ff2', hidden, v.ff2));
    return capture.dense('out', tf.mean(block, 1), v.out);
  };
  return { capture, variables: v, apply };
}

describe('MKOR on a hand-written transformer block (createCapture, custom loop)', () => {
  it('lowers the loss, with layer-norm parameters on the first-order path', () => {
    const block = transformerBlock(11);
    const optimizer = new MkorOptimizer(block.capture, { backend: adam({ learningRate: 3e-3 }), factorUpdateInterval: 3 });
    const x = tf.reshape(tf.slice(train.x, [0, 0], [256, 784]), [256, 28, 28]);
    const y = tf.slice(train.y, [0, 0], [256, 10]);
    const loss = () => tf.losses.softmaxCrossEntropy(y, block.apply(x)) as tf.Scalar;
    const losses: number[] = [];
    for (let step = 0; step < 30; step++) {
      const value = optimizer.minimize(loss, true) as tf.Scalar;
      losses.push(value.dataSync()[0] as number);
      value.dispose();
    }
    expect(optimizer.capture.secondOrder.map((l) => l.name)).toEqual(['embed', 'q', 'k', 'v', 'ff1', 'ff2', 'out']);
    expect(losses.at(-1)!).toBeLessThan(0.7 * losses[0]!);
    optimizer.dispose();
    block.capture.release();
    tf.dispose([x, y, ...Object.values(block.variables)]);
  });
});

describe('MKOR-H on a real run', () => {
  it('switches to first order at the rule\u2019s step and stops touching the factors', async () => {
    const model = mlp();
    const optimizer = new MkorOptimizer(model, { backend: adam({ learningRate: 1e-3 }), factorUpdateInterval: 1, hybrid: { rule: switchAtStep(6) } });
    await fitLosses(model, optimizer, train.x, train.y, 1, 128);
    expect(optimizer.switchedAtStep).toBe(6);
    expect(optimizer.metrics).toBeNull();
    // Factor refreshes stopped at the switch: steps 0…5 refreshed them.
    expect(optimizer.totals.refreshes).toBe(6);
    optimizer.dispose();
    model.dispose();
  });
});

describe('MKOR-H with the loss-rate rule on a real run', () => {
  it('switches once the loss stops falling fast, and training goes on first-order', async () => {
    const model = mlp(5);
    const rule = lossRateRule({ smoothing: 0.5, window: 4, threshold: 0.3, patience: 2 });
    const optimizer = new MkorOptimizer(model, { backend: adam({ learningRate: 2e-3 }), hybrid: { rule } });
    const losses = await fitLosses(model, optimizer, train.x, train.y, 6, 64);
    // The fast early drop sets the best rate; the flattening curve falls below 30% of it.
    expect(optimizer.switchedAtStep).toBeGreaterThan(5);
    expect(optimizer.switchedAtStep).toBeLessThan(96);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses.at(-1)!).toBeLessThan(losses[0]!);
    optimizer.dispose();
    model.dispose();
  });
});

describe('checkpoint and resume', () => {
  it('continues exactly as an uninterrupted run', async () => {
    const x = tf.slice(train.x, [0, 0], [256, 784]);
    const y = tf.slice(train.y, [0, 0], [256, 10]);
    const options = { backend: sgd({ learningRate: 0.05, momentum: 0.9 }), factorUpdateInterval: 3 } as const;
    const straight = mlp(21);
    const straightOptimizer = new MkorOptimizer(straight, options);
    await fitLosses(straight, straightOptimizer, x, y, 4, 64);

    const first = mlp(21);
    const firstOptimizer = new MkorOptimizer(first, options);
    await fitLosses(first, firstOptimizer, x, y, 2, 64);
    const optimizerWeights = await firstOptimizer.getWeights();
    const modelWeights = first.getWeights().map((w) => tf.clone(w));

    const resumed = mlp(99);
    resumed.setWeights(modelWeights);
    const resumedOptimizer = new MkorOptimizer(resumed, { ...options, backend: sgd({ learningRate: 0.05, momentum: 0.9 }) });
    // Variable names differ between the two models; map the checkpoint onto the new ones.
    const rename = new Map(first.weights.map((w, i) => [w.name, resumed.weights[i]!.name]));
    const layerRename = new Map(first.layers.map((l, i) => [l.name, resumed.layers[i]!.name]));
    const renamed = optimizerWeights.map((w) => {
      let name = w.name;
      for (const [from, to] of [...rename, ...layerRename]) name = name.split(from).join(to);
      return { name, tensor: w.tensor };
    });
    await resumedOptimizer.setWeights(renamed);
    firstOptimizer.dispose();
    await fitLosses(resumed, resumedOptimizer, x, y, 2, 64);
    expect(resumedOptimizer.iterations).toBe(straightOptimizer.iterations);
    resumed.getWeights().forEach((w, i) => {
      expect(Array.from(w.dataSync())).toEqual(Array.from(straight.getWeights()[i]!.dataSync()));
    });
    [straightOptimizer, resumedOptimizer].forEach((o) => o.dispose());
    [straight, first, resumed].forEach((m) => m.dispose());
    tf.dispose([x, y, ...modelWeights]);
  });
});

describe('robustness', () => {
  it('skips a NaN step without touching weights or factors, and counts it', () => {
    const model = mlp();
    const optimizer = new MkorOptimizer(model, { factorUpdateInterval: 1 });
    const x = tf.slice(train.x, [0, 0], [32, 784]);
    const y = tf.slice(train.y, [0, 0], [32, 10]);
    const loss = (scale: number) => () => tf.mul(tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor), scale) as tf.Scalar;
    optimizer.minimize(loss(1));
    const weights = model.getWeights().map((w) => Array.from(w.dataSync()));
    const factors = optimizer.totals;
    optimizer.minimize(loss(Number.NaN));
    expect(optimizer.totals.skippedSteps).toBe(1);
    expect(optimizer.totals.refreshes).toBe(factors.refreshes);
    model.getWeights().forEach((w, i) => expect(Array.from(w.dataSync())).toEqual(weights[i]));
    optimizer.minimize(loss(1));
    expect(model.getWeights().every((w) => Array.from(w.dataSync()).every(Number.isFinite))).toBe(true);
    optimizer.dispose();
    model.dispose();
    tf.dispose([x, y]);
  });

  it('keeps tf.memory flat over 1,000 steps', () => {
    const model = tfl.sequential({ layers: [tfl.layers.dense({ units: 8, activation: 'relu', inputShape: [16] }), tfl.layers.dense({ units: 4 })] });
    const optimizer = new MkorOptimizer(model, { factorUpdateInterval: 7, hybrid: { rule: switchAtStep(900) } });
    const x = tf.randomNormal([32, 16], 0, 1, 'float32', 1);
    const y = tf.randomNormal([32, 4], 0, 1, 'float32', 2);
    const step = () => optimizer.minimize(() => tf.losses.meanSquaredError(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar);
    step();
    const before = tf.memory().numTensors;
    for (let i = 1; i < 1000; i++) step();
    expect(tf.memory().numTensors).toBe(before);
    expect(optimizer.switchedAtStep).toBe(900);
    optimizer.dispose();
    model.dispose();
    tf.dispose([x, y]);
  });

  it('refuses bad hyperparameters at construction and mismatched gradients at the step', () => {
    const model = mlp();
    expect(() => new MkorOptimizer(model, { gamma: 1.5 })).toThrow(/gamma must be \(0, 1\)/);
    expect(() => new MkorOptimizer(model, { learningRate: -1 })).toThrow(/learningRate/);
    expect(() => new MkorOptimizer(model, { factorUpdateInterval: 2.5 })).toThrow(/factorUpdateInterval/);
    const optimizer = new MkorOptimizer(model);
    const kernel = model.layers[0]!.getWeights()[0]!;
    const name = model.weights[0]!.name;
    expect(() => optimizer.applyGradients({ [name]: tf.zeros([3, 3]) })).toThrow(/has shape \[3, 3\], the variable \[784, 64\]/);
    expect(Array.from(model.layers[0]!.getWeights()[0]!.dataSync())).toEqual(Array.from(kernel.dataSync()));
    optimizer.dispose();
    model.dispose();
  });
});
