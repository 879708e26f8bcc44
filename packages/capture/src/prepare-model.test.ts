import {
  type Activation64,
  activate64,
  affine64,
  im2col64,
  matmul,
  matrix,
  maxAbs,
  preActivationGradient64,
  rowMean64,
  seeded,
  transpose,
} from '@mkor/testing';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it, vi } from 'vitest';

import { prepareModel } from './prepare-model';
import type { CaptureRegistry } from './types';

function seededTensor(shape: number[], seed: number): tf.Tensor {
  return tf.tensor(seeded(shape.reduce((p, s) => p * s, 1), seed), shape);
}

/** The float32 bit patterns: equal arrays mean bit-identical tensors. */
function bits(values: tf.TypedArray): number[] {
  return Array.from(new Uint32Array(Float32Array.from(values).buffer));
}

/** Sets every weight of `model` from the seeded generator (so references can read them back). */
function seedWeights(model: tfl.LayersModel, seed: number): void {
  model.setWeights(model.getWeights().map((w, i) => tf.tidy(() => tf.mul(seededTensor(w.shape, seed + i), 0.7))));
}

/** Outputs (predict, and under a tape) and variable gradients of `loss = Σ R ⊙ model(x)`, read back as bits. */
function observe(model: tfl.LayersModel, x: tf.Tensor, weights: tf.Tensor): { predicted: number[]; taped: number[]; grads: Record<string, number[]> } {
  const predictedTensor = model.predict(x) as tf.Tensor;
  const predicted = bits(predictedTensor.dataSync());
  predictedTensor.dispose();
  let output: tf.Tensor | undefined;
  const { value, grads } = tf.variableGrads(() => {
    output = tf.keep(model.apply(x) as tf.Tensor);
    return tf.sum(tf.mul(output, weights));
  });
  const taped = bits(output!.dataSync());
  const gradBits = Object.fromEntries(Object.entries(grads).map(([name, g]) => [name, bits(g.dataSync())]));
  tf.dispose([value, output!, ...Object.values(grads)]);
  return { predicted, taped, grads: gradBits };
}

/**
 * tfjs-backend-wasm 4.22 has no Conv2DBackpropFilter kernel, so no Conv2D layer can be trained on
 * wasm, prepared or not: the Conv2D gradient tests run on the cpu backend only.
 */
const convolutionsTrain = tf.getBackend() !== 'wasm';

interface ModelCase {
  readonly title: string;
  readonly convolutional?: boolean;
  readonly build: () => tfl.LayersModel;
  readonly inputShape: number[];
}

const modelCases: ModelCase[] = [
  {
    title: 'Dense 2-D, relu with bias then softmax without',
    inputShape: [6, 5],
    build: () =>
      tfl.sequential({
        layers: [
          tfl.layers.dense({ units: 4, activation: 'relu', inputShape: [5] }),
          tfl.layers.dense({ units: 3, activation: 'softmax', useBias: false }),
        ],
      }),
  },
  {
    title: 'Dense 3-D (transformer rows), elu then tanh then linear',
    inputShape: [2, 3, 5],
    build: () =>
      tfl.sequential({
        layers: [
          tfl.layers.dense({ units: 4, activation: 'elu', inputShape: [3, 5] }),
          tfl.layers.dense({ units: 4, activation: 'tanh' }),
          tfl.layers.dense({ units: 2 }),
        ],
      }),
  },
  {
    title: "Conv2D 'same' relu, 'valid' stride 2 without bias, 'same' sigmoid, then Dense softmax",
    convolutional: true,
    inputShape: [2, 7, 7, 2],
    build: () =>
      tfl.sequential({
        layers: [
          tfl.layers.conv2d({ filters: 3, kernelSize: 3, padding: 'same', activation: 'relu', inputShape: [7, 7, 2] }),
          tfl.layers.conv2d({ filters: 4, kernelSize: 2, strides: 2, useBias: false }),
          tfl.layers.conv2d({ filters: 2, kernelSize: 2, padding: 'same', activation: 'sigmoid' }),
          tfl.layers.flatten(),
          tfl.layers.dense({ units: 3, activation: 'softmax' }),
        ],
      }),
  },
];

describe('prepareModel: the prepared model computes exactly what it did', () => {
  const checkExactness = ({ build, inputShape }: ModelCase): void => {
    const model = build();
    seedWeights(model, 11);
    const x = seededTensor(inputShape, 3);
    const outputShape = (model.predict(x) as tf.Tensor).shape;
    tf.dispose(model.predict(x) as tf.Tensor);
    const weights = seededTensor(outputShape, 5);
    const before = tf.memory().numTensors;

    const plain = observe(model, x, weights);
    const registry = prepareModel(model);
    expect(registry.secondOrder.length).toBe(model.layers.filter((l) => l.getClassName() !== 'Flatten').length);
    const prepared = observe(model, x, weights);
    expect(prepared).toEqual(plain);
    for (const layer of registry.secondOrder) expect(registry.statistics(layer.name)?.step).toBe(1);

    registry.release();
    expect(model.layers.some((l) => Object.hasOwn(l, 'call'))).toBe(false);
    expect(observe(model, x, weights)).toEqual(plain);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, weights]);
    model.dispose();
  };
  const title = '$title: bit-identical outputs and variable gradients; release() restores';
  it.each(modelCases.filter((c) => !c.convolutional))(title, checkExactness);
  it.skipIf(!convolutionsTrain).each(modelCases.filter((c) => c.convolutional))(title, checkExactness);

  it('leaves the config and serialisation untouched', () => {
    const model = modelCases[0]!.build();
    const json = JSON.stringify(model.toJSON(null, false));
    const registry = prepareModel(model);
    expect(JSON.stringify(model.toJSON(null, false))).toBe(json);
    registry.release();
    model.dispose();
  });
});

/** `max |actual − expected| ≤ tolerance · scale`. */
function expectClose(actual: tf.Tensor, expected: Float64Array, tolerance: number, scale: number): void {
  expect(actual.shape).toEqual([expected.length]);
  const values = actual.dataSync();
  const worst = Math.max(...Array.from(expected, (e, i) => Math.abs((values[i] as number) - e)));
  expect(worst).toBeLessThanOrEqual(tolerance * scale);
}

/**
 * Float32 rounding: the forward pass carries a relative error of about d_in·u (u = 2⁻²⁴ ≈ 6e-8,
 * d_in ≤ 18 here, so ≤ 1.1e-6), the activation's derivative and the row mean add a few u per
 * term. 1e-5 × the largest averaged entry leaves a margin of ~10 over that.
 */
const TOLERANCE = 1e-5;

interface StatisticsCase {
  readonly title: string;
  readonly activation: Activation64;
  readonly useBias: boolean;
}

const denseCases: (StatisticsCase & { inputShape: number[] })[] = [
  { title: 'Dense 2-D, relu, bias', activation: 'relu', useBias: true, inputShape: [8, 6] },
  { title: 'Dense 2-D, softmax, no bias', activation: 'softmax', useBias: false, inputShape: [8, 6] },
  { title: 'Dense 3-D, relu, no bias', activation: 'relu', useBias: false, inputShape: [3, 4, 6] },
  { title: 'Dense 3-D, softmax, bias', activation: 'softmax', useBias: true, inputShape: [3, 4, 6] },
  { title: 'Dense 2-D, linear, bias', activation: 'linear', useBias: true, inputShape: [5, 6] },
];

/** Captures one step of `loss = Σ R ⊙ model(x)` through `tf.variableGrads`. */
function captureOneStep(model: tfl.LayersModel, x: tf.Tensor, weights: tf.Tensor): CaptureRegistry {
  const registry = prepareModel(model);
  const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(model.apply(x) as tf.Tensor, weights)));
  tf.dispose([value, ...Object.values(grads)]);
  return registry;
}

describe('prepareModel: captured statistics equal float64 references', () => {
  it.each(denseCases)('$title', ({ activation, useBias, inputShape }) => {
    const inputDim = inputShape[inputShape.length - 1]!;
    const units = 5;
    const model = tfl.sequential({
      layers: [tfl.layers.dense({ units, activation, useBias, inputShape: inputShape.slice(1) })],
    });
    seedWeights(model, 21);
    const x = seededTensor(inputShape, 7);
    const weights = seededTensor([...inputShape.slice(0, -1), units], 9);
    const before = tf.memory().numTensors;
    const registry = captureOneStep(model, x, weights);

    const rowCount = x.size / inputDim;
    const rows = matrix(rowCount, inputDim, x.dataSync());
    const [kernel, bias] = model.getWeights();
    const z = affine64(rows, matrix(inputDim, units, kernel!.dataSync()), bias?.dataSync());
    expect(Math.min(...Array.from(z.data, Math.abs))).toBeGreaterThan(1e-4); // no relu kink within rounding
    const dz = preActivationGradient64(z, matrix(rowCount, units, weights.dataSync()), activation);

    const [layer] = registry.secondOrder;
    expect(layer).toMatchObject({ kind: 'dense', inputDim, outputDim: units, kernelShape: [inputDim, units] });
    const stats = registry.statistics(layer!.name)!;
    expect(stats.rows).toBe(rowCount);
    expect(stats.step).toBe(1);
    expectClose(stats.a, rowMean64(rows), TOLERANCE, maxAbs(rows));
    expectClose(stats.g, rowMean64(dz), TOLERANCE, maxAbs(dz));

    registry.release();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, weights]);
    model.dispose();
  });

  const convCases: (StatisticsCase & { padding: 'same' | 'valid'; strides: number; dilationRate: number })[] = [
    { title: "Conv2D 'same', relu, bias", activation: 'relu', useBias: true, padding: 'same', strides: 1, dilationRate: 1 },
    { title: "Conv2D 'valid', softmax, no bias", activation: 'softmax', useBias: false, padding: 'valid', strides: 1, dilationRate: 1 },
    { title: "Conv2D 'valid', stride 2, relu, bias", activation: 'relu', useBias: true, padding: 'valid', strides: 2, dilationRate: 1 },
    { title: "Conv2D 'same', stride 2, linear, no bias", activation: 'linear', useBias: false, padding: 'same', strides: 2, dilationRate: 1 },
  ];

  // tfjs computes no gradient through a dilated conv2d, so a dilated layer never commits; its
  // input statistic is checked through createCapture's forward-only test.
  it.skipIf(!convolutionsTrain).each(convCases)('$title', ({ activation, useBias, padding, strides, dilationRate }) => {
    const shape: [number, number, number, number] = [2, 7, 6, 2];
    const [kh, kw, filters] = [3, 2, 3];
    const model = tfl.sequential({
      layers: [
        tfl.layers.conv2d({ filters, kernelSize: [kh, kw], strides, padding, dilationRate, activation, useBias, inputShape: shape.slice(1) }),
      ],
    });
    seedWeights(model, 31);
    const x = seededTensor(shape, 13);
    const outputShape = model.outputs[0]!.shape.map((s) => s ?? shape[0]);
    const weights = seededTensor(outputShape, 17);
    const before = tf.memory().numTensors;
    const registry = captureOneStep(model, x, weights);

    const geometry = { kernelSize: [kh, kw], strides: [strides, strides], dilationRate: [dilationRate, dilationRate], padding } as const;
    const patches = im2col64(x.dataSync(), shape, geometry);
    const [kernel, bias] = model.getWeights();
    const z = affine64(patches, matrix(kh * kw * shape[3], filters, kernel!.dataSync()), bias?.dataSync());
    expect(Math.min(...Array.from(z.data, Math.abs))).toBeGreaterThan(1e-4);
    const dz = preActivationGradient64(z, matrix(patches.rows, filters, weights.dataSync()), activation);

    const [layer] = registry.secondOrder;
    expect(layer).toMatchObject({ kind: 'conv2d', inputDim: kh * kw * shape[3], outputDim: filters, kernelShape: [kh, kw, shape[3], filters] });
    const stats = registry.statistics(layer!.name)!;
    expect(stats.rows).toBe(patches.rows);
    expectClose(stats.a, rowMean64(patches), TOLERANCE, maxAbs(patches));
    expectClose(stats.g, rowMean64(dz), TOLERANCE, maxAbs(dz));

    registry.release();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, weights]);
    model.dispose();
  });
});

describe('prepareModel with model.fit', () => {
  const build = (): tfl.Sequential => {
    const model = tfl.sequential({
      layers: [
        tfl.layers.dense({ units: 6, activation: 'relu', inputShape: [4] }),
        tfl.layers.dense({ units: 3, activation: 'softmax' }),
      ],
    });
    seedWeights(model, 41);
    model.compile({ optimizer: tf.train.sgd(0.1), loss: 'categoricalCrossentropy' });
    return model;
  };
  const samples = 32;
  const x = seededTensor([samples, 4], 43);
  const labels = tf.oneHot(tf.tensor1d(Array.from({ length: samples }, (_, i) => (i * 7) % 3), 'int32'), 3);

  it('commits one pair per step whose statistics match a float64 backward pass of the loss', async () => {
    const model = build();
    const [w1, b1, w2, b2] = model.getWeights().map((w) => w.dataSync());
    const registry = prepareModel(model);
    await model.fit(x, labels, { batchSize: samples, epochs: 1, shuffle: false, verbose: 0 });

    // Mean categorical cross-entropy over n rows: ∂Loss/∂z₂ = (softmax(z₂) − y) / n.
    const rows = matrix(samples, 4, x.dataSync());
    const z1 = affine64(rows, matrix(4, 6, w1!), b1!);
    const h = activate64(z1, 'relu');
    const z2 = affine64(h, matrix(6, 3, w2!), b2!);
    const s = activate64(z2, 'softmax');
    const y = labels.dataSync();
    const dz2 = matrix(samples, 3, s.data.map((v, k) => (v - (y[k] as number)) / samples));
    const dz1 = preActivationGradient64(z1, matmul(dz2, transpose(matrix(6, 3, w2!))), 'relu');

    const [first, second] = registry.secondOrder;
    const stats1 = registry.statistics(first!.name)!;
    const stats2 = registry.statistics(second!.name)!;
    expect([stats1.step, stats1.rows, stats2.step, stats2.rows]).toEqual([1, samples, 1, samples]);
    expectClose(stats1.a, rowMean64(rows), TOLERANCE, maxAbs(rows));
    expectClose(stats1.g, rowMean64(dz1), TOLERANCE, maxAbs(dz1));
    expectClose(stats2.a, rowMean64(h), TOLERANCE, maxAbs(h));
    expectClose(stats2.g, rowMean64(dz2), TOLERANCE, maxAbs(dz2));
    registry.release();
    model.dispose();
  });

  it('trains exactly like the unprepared model, commits per batch, not on predict, and leaks nothing', async () => {
    const plain = build();
    const model = build();
    const registry = prepareModel(model);
    const fit = () => model.fit(x, labels, { batchSize: 8, epochs: 1, shuffle: false, verbose: 0 });
    await fit();
    await plain.fit(x, labels, { batchSize: 8, epochs: 1, shuffle: false, verbose: 0 });
    const steps = () => registry.secondOrder.map((l) => registry.statistics(l.name)!.step);
    expect(steps()).toEqual([4, 4]);
    expect(registry.statistics(registry.secondOrder[0]!.name)!.rows).toBe(8);

    const predictions = model.predict(x) as tf.Tensor;
    tf.dispose(predictions);
    expect(steps()).toEqual([4, 4]);

    const settled = tf.memory().numTensors;
    for (let epoch = 0; epoch < 3; epoch++) {
      await fit();
      await plain.fit(x, labels, { batchSize: 8, epochs: 1, shuffle: false, verbose: 0 });
      expect(tf.memory().numTensors).toBe(settled);
    }
    expect(steps()).toEqual([16, 16]);
    const trained = model.getWeights().map((w) => bits(w.dataSync()));
    expect(trained).toEqual(plain.getWeights().map((w) => bits(w.dataSync())));

    registry.release();
    plain.dispose();
    model.dispose();
  });

  it("passes tfjs's DEBUG-mode kernel leak checks", () => {
    const model = build();
    const registry = prepareModel(model);
    const quiet = vi.spyOn(console, 'log').mockImplementation(() => undefined);
    tf.env().set('DEBUG', true);
    try {
      const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(model.apply(x) as tf.Tensor, labels)));
      tf.dispose([value, ...Object.values(grads)]);
    } finally {
      tf.env().set('DEBUG', false);
      quiet.mockRestore();
    }
    expect(registry.statistics(registry.secondOrder[0]!.name)!.step).toBe(1);
    registry.release();
    model.dispose();
  });

  it('keeps tf.memory flat over many variableGrads steps', () => {
    const model = build();
    const registry = prepareModel(model);
    const step = () => {
      const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(model.apply(x) as tf.Tensor, labels)));
      tf.dispose([value, ...Object.values(grads)]);
    };
    step();
    const settled = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) step();
    expect(tf.memory().numTensors).toBe(settled);
    expect(registry.statistics(registry.secondOrder[1]!.name)!.step).toBe(21);
    registry.release();
    model.dispose();
  });
});

describe('prepareModel: classification', () => {
  it('captures Dense (3-D, nested too), and sends embeddings, normalisations, wide, excluded and shared layers to first order', () => {
    const tokens = tfl.input({ shape: [5] });
    const embedded = tfl.layers.embedding({ inputDim: 20, outputDim: 8, name: 'embed' }).apply(tokens) as tfl.SymbolicTensor;
    const projected = tfl.layers.dense({ units: 8, name: 'proj' }).apply(embedded) as tfl.SymbolicTensor;
    const normed = tfl.layers.layerNormalization({ name: 'norm' }).apply(projected) as tfl.SymbolicTensor;
    const shared = tfl.layers.dense({ units: 8, name: 'shared' });
    const twice = shared.apply(shared.apply(normed)) as tfl.SymbolicTensor;
    const block = tfl.sequential({
      name: 'block',
      layers: [tfl.layers.dense({ units: 8, inputShape: [5, 8], name: 'inner' }), tfl.layers.dense({ units: 8, name: 'skipped' })],
    });
    const nested = block.apply(twice) as tfl.SymbolicTensor;
    const flat = tfl.layers.flatten().apply(nested) as tfl.SymbolicTensor;
    const wide = tfl.layers.dense({ units: 50, name: 'wide' }).apply(flat) as tfl.SymbolicTensor;
    const model = tfl.model({ inputs: tokens, outputs: wide });

    const ids = tf.tensor2d([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]], [2, 5], 'int32');
    const before = tf.memory().numTensors;
    const registry = prepareModel(model, { maxDim: 40, include: (layer) => layer.name !== 'skipped' });
    expect(registry.secondOrder.map((l) => l.name)).toEqual(['proj', 'block/inner']);
    const reasons = Object.fromEntries(registry.firstOrder.map((l) => [l.name, l.reason]));
    expect(Object.keys(reasons).sort()).toEqual(['block/skipped', 'embed', 'norm', 'shared', 'wide']);
    expect(reasons.embed).toMatch(/^embedding/);
    expect(reasons.norm).toMatch(/^normalisation/);
    expect(reasons.shared).toMatch(/^shared: applied 2 times/);
    expect(reasons.wide).toMatch(/^wider than maxDim 40 \(kernel 40 × 50\)/);
    expect(reasons['block/skipped']).toBe('excluded by options.include');
    expect(registry.firstOrder.find((l) => l.name === 'norm')!.variables).toHaveLength(2);

    const proj = registry.secondOrder[0]!;
    expect(proj).toMatchObject({ kind: 'dense', inputDim: 8, outputDim: 8 });
    expect(registry.layerForVariable(proj.kernelName)).toBe(proj);
    expect(registry.layerForVariable(proj.biasName!)).toBe(proj);
    expect(registry.layerForVariable(registry.firstOrder[0]!.variables[0]!)).toBeUndefined();
    const table = registry.describe();
    for (const name of ['proj', 'block/inner', 'embed', 'wide', 'excluded by options.include']) expect(table).toContain(name);

    // 3-D rows: batch·seq; samples: batch.
    // wasm has no UnsortedSegmentSum (the embedding's gradient): differentiate the other variables.
    const variables = model.trainableWeights.filter((w) => !w.name.startsWith('embed')).map((w) => w.read() as tf.Variable);
    const { value, grads } = tf.variableGrads(() => tf.sum(model.apply(ids) as tf.Tensor), variables);
    tf.dispose([value, ...Object.values(grads)]);
    expect(registry.statistics('proj')).toMatchObject({ rows: 10, samples: 2, step: 1 });
    expect(registry.statistics('block/inner')).toMatchObject({ rows: 10, samples: 2, step: 1 });
    expect(registry.statistics('wide')).toBeUndefined();

    registry.release();
    expect(tf.memory().numTensors).toBe(before);
    ids.dispose();
    model.dispose();
  });

  it('counts a layer used both directly and inside a nested model as shared', () => {
    const shared = tfl.layers.dense({ units: 5, inputShape: [5], name: 'twice' });
    const inner = tfl.sequential({ name: 'inner_block', layers: [shared, tfl.layers.dense({ units: 5, name: 'once' })] });
    const input = tfl.input({ shape: [5] });
    const model = tfl.model({ inputs: input, outputs: inner.apply(shared.apply(input)) as tfl.SymbolicTensor });
    const registry = prepareModel(model);
    expect(registry.secondOrder.map((l) => l.name)).toEqual(['inner_block/once']);
    expect(registry.firstOrder).toEqual([{ name: 'twice', variables: ['twice/kernel', 'twice/bias'], reason: expect.stringMatching(/^shared: applied 2 times/) }]);
    registry.release();
    model.dispose();
  });

  it('refuses channelsFirst Conv2D with a reason', () => {
    const model = tfl.sequential({
      layers: [tfl.layers.conv2d({ filters: 2, kernelSize: 3, dataFormat: 'channelsFirst', inputShape: [3, 8, 8] })],
    });
    const registry = prepareModel(model);
    expect(registry.secondOrder).toEqual([]);
    expect(registry.firstOrder[0]!.reason).toMatch(/channelsFirst/);
    registry.release();
    model.dispose();
  });

  it('refuses to prepare a layer twice until released, and rejects bad arguments', () => {
    const model = modelCases[0]!.build();
    const registry = prepareModel(model);
    expect(() => prepareModel(model)).toThrow(/^prepareModel: layer '.*' is already prepared/);
    registry.release();
    registry.release();
    const again = prepareModel(model);
    expect(again.secondOrder).toHaveLength(2);
    again.release();
    expect(() => prepareModel(null as unknown as tfl.LayersModel)).toThrow(/^prepareModel: model must be/);
    expect(() => prepareModel(model, { maxDim: 0 })).toThrow(/^prepareModel: maxDim must be an integer/);
    expect(() => prepareModel(model, { include: 'yes' as unknown as () => boolean })).toThrow(/^prepareModel: include must be a function/);
    model.dispose();
  });
});

describe('prepareModel rowClamp', () => {
  it('refuses a clamp that is not a positive number', () => {
    const model = tfl.sequential({ layers: [tfl.layers.dense({ units: 2, inputShape: [3] })] });
    expect(() => prepareModel(model, { rowClamp: 0 })).toThrow('prepareModel: rowClamp must be (0, ∞), got 0');
    expect(() => prepareModel(model, { rowClamp: Number.NaN })).toThrow(/rowClamp/);
    model.dispose();
  });
});
