/**
 * Fixtures and scenarios of the tests that train with a second-order `tf.Optimizer` built on
 * `@mkor/capture` (`KfacOptimizer`, `EvaOptimizer`): a seeded MLP, `model.fit`'s per-epoch
 * losses, a small batch of Fashion-MNIST pixels with one-hot labels, and the scenarios both
 * optimizers must pass (training with `model.fit`, an exact checkpoint/resume with flat memory,
 * training a hand-written layer through a `createCapture` registry, refusing bad options before
 * preparing the model). Scenarios assert with vitest's `expect`; the images come from the caller
 * (`loadFashionMnist` of `@mkor/datasets`), the optimizer and capture from factories, so this
 * package depends on neither.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { expect } from 'vitest';

import { type StepTimings, expectStepTimings } from './second-order-fixtures';

/** Images and labels in host memory, as `@mkor/datasets`' `ImageSplit`. */
export interface LabelledImages {
  /** `count × 784` pixels. */
  readonly images: Float32Array;
  /** `count` labels in 0…9. */
  readonly labels: Uint8Array;
  readonly count: number;
}

/** A batch of features and one-hot labels (the caller disposes both). */
interface LabelledBatch {
  readonly inputs: tf.Tensor2D;
  readonly labels: tf.Tensor2D;
}

/** `labels` as one-hot float32 rows over the 10 classes. */
function oneHot(labels: Uint8Array): tf.Tensor2D {
  return tf.tidy(() => tf.cast(tf.oneHot(tf.tensor1d(labels, 'int32'), 10), 'float32') as tf.Tensor2D);
}

/**
 * A classifier MLP, `inputDim → hidden (relu) → 10 (softmax)`, whose kernels are Glorot-uniform
 * with seeds `seed` and `seed + 1`, so its initial weights depend on the arguments only.
 */
function mlp(inputDim: number, hidden: number, seed = 3): tfl.Sequential {
  return tfl.sequential({
    layers: [
      tfl.layers.dense({ units: hidden, activation: 'relu', inputShape: [inputDim], kernelInitializer: tfl.initializers.glorotUniform({ seed }) }),
      tfl.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + 1 }) }),
    ],
  });
}

/**
 * Compiles `model` with `optimizer` and categorical cross-entropy, fits it for `epochs` epochs
 * of batch 128 over `split` (images flattened to 784, unshuffled) and returns the per-epoch mean
 * losses. The tensors of the split are made for the call and freed after it.
 */
async function fitLosses(model: tfl.LayersModel, optimizer: tf.Optimizer, split: LabelledImages, epochs: number): Promise<number[]> {
  const x = tf.tensor2d(split.images, [split.count, 784]);
  const y = oneHot(split.labels);
  try {
    model.compile({ optimizer, loss: 'categoricalCrossentropy' });
    const history = await model.fit(x, y, { epochs, batchSize: 128, shuffle: false, verbose: 0 });
    return history.history.loss as number[];
  } finally {
    tf.dispose([x, y]);
  }
}

/** A small batch of `split`: the first 32 images, 20 pixels of each (columns 300–319), and their one-hot labels. */
function smallBatch(split: LabelledImages): LabelledBatch {
  const inputs = tf.tidy(() => tf.slice(tf.tensor2d(split.images.subarray(0, 32 * 784), [32, 784]), [0, 300], [32, 20]) as tf.Tensor2D);
  return { inputs, labels: oneHot(split.labels.subarray(0, 32)) };
}

/** The part of `@mkor/capture`'s `ModelCapture` (from `createCapture`) that {@link denseProblem} uses. */
export interface DenseCapture {
  dense(name: string, x: tf.Tensor, kernel: tf.Variable, bias?: tf.Variable): tf.Tensor;
}

/** A hand-written softmax regression on a {@link smallBatch}: {@link denseProblem}. */
export interface DenseProblem {
  /** The cross-entropy of `softmax(inputs · kernel + bias)`, the layer computed through `capture.dense('logits', ...)`. */
  loss(capture: DenseCapture): () => tf.Scalar;
  /** Frees the batch and the variables. */
  dispose(): void;
}

/** A 20 → 10 softmax regression on the {@link smallBatch} of `split`: a seeded normal kernel (σ = 0.1) and a zero bias, as variables. */
export function denseProblem(split: LabelledImages): DenseProblem {
  const { inputs, labels } = smallBatch(split);
  const kernel = tf.variable(tf.randomNormal([20, 10], 0, 0.1, 'float32', 4));
  const bias = tf.variable(tf.zeros([10]));
  return {
    loss: (capture) => () => tf.losses.softmaxCrossEntropy(labels, capture.dense('logits', inputs, kernel, bias)) as tf.Scalar,
    dispose: () => tf.dispose([kernel, bias, inputs, labels]),
  };
}

/** An optimizer whose `metrics` report the latest step's scale factors per layer and its timings (KFAC, Eva). */
export type OptimizerWithStepMetrics = tf.Optimizer & {
  readonly metrics: (StepTimings & { readonly scaleFactors: Readonly<Record<string, number>> }) | null;
};

/**
 * The `model.fit` scenario: `mlp(784, 32, seed)` trained with the optimizer `create` makes for it,
 * 4 epochs over `split`, must give finite losses, the last below 0.75× the first; the last step's
 * metrics must hold a scale factor for the first layer and timings ({@link expectStepTimings}).
 * `inspect` then sees the optimizer and the model before both are disposed.
 */
export async function expectFitLowersLoss<O extends OptimizerWithStepMetrics>(
  split: LabelledImages,
  create: (model: tfl.LayersModel) => O,
  options: { readonly seed?: number; readonly inspect?: (optimizer: O, model: tfl.LayersModel) => void } = {},
): Promise<void> {
  const model = mlp(784, 32, options.seed);
  const optimizer = create(model);
  const losses = await fitLosses(model, optimizer, split, 4);
  expect(losses.every(Number.isFinite)).toBe(true);
  // Chance level is ln 10 ≈ 2.30; four epochs of 4 steps get well below the first epoch's mean.
  expect(losses.at(-1)!).toBeLessThan(0.75 * losses[0]!);
  expect(optimizer.metrics?.scaleFactors).toHaveProperty(model.layers[0]!.name);
  expectStepTimings(optimizer.metrics);
  options.inspect?.(optimizer, model);
  optimizer.dispose();
  model.dispose();
}

/**
 * The checkpoint scenario, on `mlp(20, 8, 21)` and the {@link smallBatch} of `split`: the optimizer
 * `create` makes takes 3 `minimize` steps, the model's weights and the optimizer's `getWeights`
 * are saved, 3 more steps must keep `tf.memory().numTensors` flat; then the model's saved weights
 * and a fresh optimizer restored with `setWeights` take the same 3 steps and must end at exactly
 * the same weights. `inspect` sees the resumed optimizer before it is disposed; at the end no
 * tensor may be left over.
 */
export async function expectExactResume<O extends tf.Optimizer>(
  split: LabelledImages,
  create: (model: tfl.LayersModel) => O,
  inspect: (resumed: O) => void = () => undefined,
): Promise<void> {
  const { inputs, labels } = smallBatch(split);
  const before = tf.memory().numTensors;
  const loss = (model: tfl.LayersModel) => () => tf.losses.softmaxCrossEntropy(labels, model.apply(inputs) as tf.Tensor) as tf.Scalar;
  const model = mlp(20, 8, 21);
  const first = create(model);
  for (let i = 0; i < 3; i++) first.minimize(loss(model));
  const savedModel = model.getWeights().map((w) => tf.clone(w));
  // getWeights returns the state's own tensors and new scalars for its numbers: clone, then free those scalars.
  const weights = await first.getWeights();
  const savedState = weights.map((w) => ({ name: w.name, tensor: tf.clone(w.tensor) }));
  // Every rank-0 entry is a number leaf (iterations, steps, totals) made for this call; the state's tensors have rank ≥ 1.
  tf.dispose(weights.filter((w) => w.tensor.rank === 0).map((w) => w.tensor));
  const settled = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) first.minimize(loss(model));
  expect(tf.memory().numTensors).toBe(settled);
  const continued = model.getWeights().map((w) => Array.from(w.dataSync()));
  first.dispose();

  model.setWeights(savedModel);
  const resumed = create(model);
  await resumed.setWeights(savedState);
  for (let i = 0; i < 3; i++) resumed.minimize(loss(model));
  expect(model.getWeights().map((w) => Array.from(w.dataSync()))).toEqual(continued);
  inspect(resumed);
  resumed.dispose();
  tf.dispose([...savedModel, ...savedState.map((w) => w.tensor)]);
  model.dispose();
  expect(tf.memory().numTensors).toBeLessThanOrEqual(before);
  tf.dispose([inputs, labels]);
}

/** The part of a capture registry that {@link expectTrainsThroughRegistry} uses. */
export interface ReleasableCapture extends DenseCapture {
  statistics(name: string): unknown;
  release(): void;
}

/**
 * The registry scenario: the {@link denseProblem} of `split` computed through the capture
 * `createCapture` makes, 10 `minimize` steps of the optimizer `createOptimizer` makes on it must
 * lower the loss; `inspect` sees the optimizer before it is disposed. The registry was passed in,
 * so it must still hold the layer's statistics after the optimizer's `dispose`; once it is
 * released, as many tensors as before must be allocated.
 */
export function expectTrainsThroughRegistry<C extends ReleasableCapture, O extends tf.Optimizer>(
  split: LabelledImages,
  createCapture: () => C,
  createOptimizer: (capture: C) => O,
  inspect: (optimizer: O) => void = () => undefined,
): void {
  const problem = denseProblem(split);
  const before = tf.memory().numTensors;
  const capture = createCapture();
  const optimizer = createOptimizer(capture);
  const loss = problem.loss(capture);
  const losses: number[] = [];
  for (let i = 0; i < 10; i++) {
    const value = optimizer.minimize(loss, true)!;
    losses.push(value.dataSync()[0]!);
    value.dispose();
  }
  expect(losses.at(-1)!).toBeLessThan(losses[0]!);
  inspect(optimizer);
  optimizer.dispose();
  // The registry was passed in: it stays the caller's.
  expect(capture.statistics('logits')).toBeDefined();
  capture.release();
  expect(tf.memory().numTensors).toBe(before);
  problem.dispose();
}

/**
 * The refusal scenario: on `mlp(20, 8)`, `create(model, options)` must throw `error` for each
 * `[options, error]` case, and leave the model unprepared (`prepare(model).release()` must
 * succeed afterwards; pass `prepareModel` of `@mkor/capture`).
 */
export function expectRefusalsBeforePreparing<T>(
  create: (model: tfl.LayersModel, options: T) => unknown,
  prepare: (model: tfl.LayersModel) => { release(): void },
  cases: readonly (readonly [options: T, error: RegExp])[],
): void {
  const model = mlp(20, 8);
  for (const [options, error] of cases) expect(() => create(model, options)).toThrow(error);
  // Nothing stayed wrapped: the model can be prepared again.
  prepare(model).release();
  model.dispose();
}
