/**
 * The real models the suites train: a Fashion-MNIST MLP classifier, a Fashion-MNIST autoencoder
 * (the model of the paper's inversion-frequency study), a small CNN (on wasm through
 * `@mkor/wasm-kernels`, which adds the Conv2D gradients tfjs-backend-wasm 4.22 lacks) and a one-block character
 * transformer on a real English text corpus (Debian's licence texts) written by hand through
 * `createCapture`. Each task owns its data and model and hands out batches by step.
 */
import { type CaptureRegistry, createCapture } from '@mkor/capture';
import { type ImageSplit, loadFashionMnist, loadTextCorpus, sampleWindows } from '@mkor/datasets';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

import { permutation, seededRandom } from './random';

/** What an optimizer factory is given: a tfjs model (prepared by the optimizer) or a capture registry. */
export type OptimizerTarget = tfl.LayersModel | CaptureRegistry;

/** One model with its data, ready to train. */
export interface TaskInstance {
  /** The model (or capture registry) second-order optimizers precondition. */
  readonly target: OptimizerTarget;
  /** The trainable variables. */
  readonly variables: tf.Variable[];
  /**
   * The training loss on the batch of `step`. Call it inside `optimizer.minimize` /
   * `computeGradients` or `tf.tidy`: the batch tensors it creates are left to that scope.
   */
  loss(step: number): tf.Scalar;
  /** The test metric and loss on the held-out data. */
  evaluate(): { loss: number; metric: number };
  /** The batch's layer inputs and output gradients of every Dense layer (rank-1 suite); tasks without Dense layers return []. */
  denseRows?(step: number): { layer: string; inputs: tf.Tensor2D; outputGradients: tf.Tensor2D }[];
  dispose(): void;
}

/** A task: how to build a seeded instance, and how to read its numbers. */
export interface Task {
  readonly name: string;
  readonly description: string;
  /** The backend the task trains on. */
  readonly backend: 'wasm' | 'cpu';
  /** The test metric's name and whether larger is better. */
  readonly metric: { readonly name: string; readonly higherIsBetter: boolean };
  readonly lossName: string;
  /** The training loss (mean of the last 10 steps) that counts as reaching the target. */
  readonly targetLoss: number;
  readonly batchSize: number;
  /** A fresh model; `covariance` makes a hand-made capture record full covariances (KFAC needs them). */
  create(seed: number, options?: { covariance?: boolean }): TaskInstance;
}

/** Sizes of the tasks (smoke, modest, full). */
export interface TaskSizes {
  readonly trainImages: number;
  readonly testImages: number;
  readonly mlpHidden: number;
  readonly batchSize: number;
  readonly autoencoderBatch: number;
  readonly cnnBatchSize: number;
  readonly transformerWidth: number;
  readonly transformerContext: number;
  readonly transformerBatch: number;
  readonly testWindows: number;
}

/** Image batches: a seeded permutation per epoch, consecutive slices per step. */
function imageBatches(split: ImageSplit, batchSize: number, seed: number, flatten: boolean) {
  const random = seededRandom(seed + 1000);
  const perEpoch = Math.floor(split.count / batchSize);
  let epoch = -1;
  let order: Int32Array = new Int32Array(0);
  return (step: number): { x: tf.Tensor; labels: Uint8Array; pixels: Float32Array } => {
    const wanted = Math.floor(step / perEpoch);
    while (epoch < wanted) {
      order = permutation(split.count, random);
      epoch += 1;
    }
    const offset = (step % perEpoch) * batchSize;
    const pixels = new Float32Array(batchSize * 784);
    const labels = new Uint8Array(batchSize);
    for (let i = 0; i < batchSize; i++) {
      const index = order[offset + i] as number;
      pixels.set(split.images.subarray(index * 784, (index + 1) * 784), i * 784);
      labels[i] = split.labels[index] as number;
    }
    const x = flatten ? tf.tensor2d(pixels, [batchSize, 784]) : tf.tensor4d(pixels, [batchSize, 28, 28, 1]);
    return { x, labels, pixels };
  };
}

const oneHot = (labels: Uint8Array): tf.Tensor2D => tf.tidy(() => tf.cast(tf.oneHot(tf.tensor1d(labels, 'int32'), 10), 'float32') as tf.Tensor2D);

let cachedImages: { train: ImageSplit; test: ImageSplit; key: string } | undefined;
function images(sizes: TaskSizes): { train: ImageSplit; test: ImageSplit } {
  const key = `${sizes.trainImages}/${sizes.testImages}`;
  if (cachedImages?.key !== key) cachedImages = { ...loadFashionMnist({ trainLimit: sizes.trainImages, testLimit: sizes.testImages }), key };
  return cachedImages;
}

const ACTIVATIONS: Record<string, (x: tf.Tensor) => tf.Tensor> = {
  linear: (x) => x,
  relu: (x) => tf.relu(x),
  sigmoid: (x) => tf.sigmoid(x),
};

/**
 * The rows of every Dense layer of a Sequential of Dense layers on batch `x`: its inputs and the
 * gradients of `lossOf(output)` with respect to its pre-activation outputs, by a hand-written
 * forward pass with the layer's current weights.
 */
function sequentialDenseRows(model: tfl.Sequential, x: tf.Tensor2D, lossOf: (output: tf.Tensor) => tf.Scalar) {
  const layers = model.layers.map((layer) => {
    const [kernel, bias] = layer.getWeights() as [tf.Tensor2D, tf.Tensor1D];
    const activation = ACTIVATIONS[String((layer.getConfig() as { activation?: string }).activation ?? 'linear')];
    if (activation === undefined) throw new Error(`rank-1 rows: unsupported activation of ${layer.name}`);
    return { name: layer.name, kernel, bias, activation };
  });
  const forwardFrom = (k: number, preActivation: tf.Tensor): tf.Tensor => {
    let h = (layers[k] as (typeof layers)[number]).activation(preActivation);
    for (let j = k + 1; j < layers.length; j++) {
      const layer = layers[j] as (typeof layers)[number];
      h = layer.activation(tf.add(tf.matMul(h as tf.Tensor2D, layer.kernel), layer.bias));
    }
    return h;
  };
  const rows: { layer: string; inputs: tf.Tensor2D; outputGradients: tf.Tensor2D }[] = [];
  let input: tf.Tensor2D = x;
  layers.forEach((layer, k) => {
    const preActivation = tf.add(tf.matMul(input, layer.kernel), layer.bias) as tf.Tensor2D;
    const outputGradients = tf.grad((z: tf.Tensor) => lossOf(forwardFrom(k, z)))(preActivation) as tf.Tensor2D;
    rows.push({ layer: layer.name, inputs: input === x ? tf.clone(x) : input, outputGradients });
    input = layer.activation(preActivation) as tf.Tensor2D;
  });
  return rows;
}

const crossEntropy = (labels: tf.Tensor2D) => (logits: tf.Tensor) => tf.losses.softmaxCrossEntropy(labels, logits) as tf.Scalar;

/**
 * A Fashion-MNIST classifier's instance: softmax cross-entropy on seeded batches, test accuracy
 * on the test split; `flatten` feeds `[batch, 784]` rows instead of `[batch, 28, 28, 1]` images.
 */
function classifierInstance(model: tfl.Sequential, sizes: TaskSizes, batchSize: number, seed: number, flatten: boolean): TaskInstance {
  const data = images(sizes);
  const batches = imageBatches(data.train, batchSize, seed, flatten);
  const testShape = flatten ? [data.test.count, 784] : [data.test.count, 28, 28, 1];
  const test = { x: tf.tensor(data.test.images, testShape), y: oneHot(data.test.labels) };
  const instance: TaskInstance = {
    target: model,
    variables: model.trainableWeights.map((w) => w.read() as tf.Variable),
    loss(step) {
      const { x, labels } = batches(step);
      return crossEntropy(oneHot(labels))(model.apply(x, { training: true }) as tf.Tensor);
    },
    evaluate() {
      return tf.tidy(() => {
        const logits = model.predict(test.x) as tf.Tensor2D;
        const loss = crossEntropy(test.y)(logits).dataSync()[0] as number;
        const correct = tf.mean(tf.cast(tf.equal(tf.argMax(logits, 1), tf.argMax(test.y, 1)), 'float32')).dataSync()[0] as number;
        return { loss, metric: correct };
      });
    },
    dispose() {
      tf.dispose([test.x, test.y]);
      model.dispose();
    },
  };
  if (!flatten) return instance;
  return {
    ...instance,
    denseRows(step) {
      const { x, labels } = batches(step);
      const y = oneHot(labels);
      const rows = sequentialDenseRows(model, x as tf.Tensor2D, crossEntropy(y));
      tf.dispose([x, y]);
      return rows;
    },
  };
}

/** Fashion-MNIST MLP classifier 784 → h → h → 10 (ReLU), softmax cross-entropy; metric test accuracy. */
export function mlpTask(sizes: TaskSizes, batchSize = sizes.batchSize): Task {
  const hidden = sizes.mlpHidden;
  return {
    name: 'mlp',
    description: `Fashion-MNIST MLP 784-${hidden}-${hidden}-10 (ReLU), softmax cross-entropy, batch ${batchSize}`,
    backend: 'wasm',
    metric: { name: 'test accuracy', higherIsBetter: true },
    lossName: 'cross-entropy',
    targetLoss: 0.6,
    batchSize,
    create(seed) {
      const init = (offset: number) => tfl.initializers.glorotUniform({ seed: seed * 10 + offset });
      const model = tfl.sequential({
        layers: [
          tfl.layers.dense({ units: hidden, activation: 'relu', inputShape: [784], kernelInitializer: init(1) }),
          tfl.layers.dense({ units: hidden, activation: 'relu', kernelInitializer: init(2) }),
          tfl.layers.dense({ units: 10, kernelInitializer: init(3) }),
        ],
      });
      return classifierInstance(model, sizes, batchSize, seed, true);
    },
  };
}

/** Fashion-MNIST autoencoder 784 → 256 → 64 → 256 → 784 (ReLU, sigmoid output), mean squared error. */
export function autoencoderTask(sizes: TaskSizes): Task {
  const batchSize = sizes.autoencoderBatch;
  return {
    name: 'autoencoder',
    description: `Fashion-MNIST autoencoder 784-256-64-256-784 (ReLU, sigmoid output), mean squared error, batch ${batchSize}`,
    backend: 'wasm',
    metric: { name: 'test MSE', higherIsBetter: false },
    lossName: 'MSE',
    targetLoss: 0.035,
    batchSize,
    create(seed) {
      const data = images(sizes);
      const init = (offset: number) => tfl.initializers.glorotUniform({ seed: seed * 10 + offset });
      const model = tfl.sequential({
        layers: [
          tfl.layers.dense({ units: 256, activation: 'relu', inputShape: [784], kernelInitializer: init(1) }),
          tfl.layers.dense({ units: 64, activation: 'relu', kernelInitializer: init(2) }),
          tfl.layers.dense({ units: 256, activation: 'relu', kernelInitializer: init(3) }),
          tfl.layers.dense({ units: 784, activation: 'sigmoid', kernelInitializer: init(4) }),
        ],
      });
      const batches = imageBatches(data.train, batchSize, seed, true);
      const testX = tf.tensor2d(data.test.images, [data.test.count, 784]);
      const lossOf = (x: tf.Tensor) => (output: tf.Tensor) => tf.losses.meanSquaredError(x, output) as tf.Scalar;
      return {
        target: model,
        variables: model.trainableWeights.map((w) => w.read() as tf.Variable),
        loss(step) {
          const { x } = batches(step);
          return lossOf(x)(model.apply(x, { training: true }) as tf.Tensor);
        },
        evaluate() {
          const loss = tf.tidy(() => lossOf(testX)(model.predict(testX) as tf.Tensor).dataSync()[0] as number);
          return { loss, metric: loss };
        },
        denseRows(step) {
          const { x } = batches(step);
          const rows = sequentialDenseRows(model, x as tf.Tensor2D, lossOf(x));
          x.dispose();
          return rows;
        },
        dispose() {
          testX.dispose();
          model.dispose();
        },
      };
    },
  };
}

/** A small Fashion-MNIST CNN (conv 8 → conv 16, stride 2, → dense 10) on wasm (with `@mkor/wasm-kernels`). */
export function cnnTask(sizes: TaskSizes): Task {
  const batchSize = sizes.cnnBatchSize;
  return {
    name: 'cnn',
    description: `Fashion-MNIST CNN conv3×3/2(8)-conv3×3/2(16)-dense(10), softmax cross-entropy, batch ${batchSize}, wasm with \`@mkor/wasm-kernels\` (tfjs-backend-wasm 4.22 alone cannot train Conv2D: no Conv2DBackpropFilter kernel)`,
    backend: 'wasm',
    metric: { name: 'test accuracy', higherIsBetter: true },
    lossName: 'cross-entropy',
    targetLoss: 0.8,
    batchSize,
    create(seed) {
      const init = (offset: number) => tfl.initializers.glorotUniform({ seed: seed * 10 + offset });
      const model = tfl.sequential({
        layers: [
          tfl.layers.conv2d({ filters: 8, kernelSize: 3, strides: 2, activation: 'relu', inputShape: [28, 28, 1], kernelInitializer: init(1) }),
          tfl.layers.conv2d({ filters: 16, kernelSize: 3, strides: 2, activation: 'relu', kernelInitializer: init(2) }),
          tfl.layers.flatten(),
          tfl.layers.dense({ units: 10, kernelInitializer: init(3) }),
        ],
      });
      return classifierInstance(model, sizes, batchSize, seed, false);
    },
  };
}

/** Instances created so far: numbers their variables, whose names must be unique in the engine. */
let transformerInstances = 0;

/**
 * A one-block causal character transformer (pre-norm attention + ReLU MLP, learned positions)
 * over Debian's licence texts, written by hand through `createCapture`: the token embedding
 * (a Dense layer on one-hot characters), Q, K, V, the attention output, both MLP layers and the
 * output head are second-order; positions and layer norms are first-order.
 */
export function transformerTask(sizes: TaskSizes): Task {
  const d = sizes.transformerWidth;
  const context = sizes.transformerContext;
  const batchSize = sizes.transformerBatch;
  return {
    name: 'transformer',
    description: `character transformer, 1 causal block, width ${d}, context ${context}, batch ${batchSize} sequences (${batchSize * context} rows), on Debian's licence texts (/usr/share/common-licenses)`,
    backend: 'wasm',
    metric: { name: 'test loss (nats/char)', higherIsBetter: false },
    lossName: 'cross-entropy (nats/char)',
    targetLoss: 2.5,
    batchSize,
    create(seed, options = {}) {
      const corpus = loadTextCorpus();
      const vocabulary = corpus.vocabularySize;
      const capture = createCapture({ covariance: options.covariance ?? false });
      const random = seededRandom(seed + 2000);
      transformerInstances += 1;
      const prefix = `transformer-${transformerInstances}`;
      let counter = 0;
      const weight = (shape: number[], scale: number): tf.Variable => {
        counter += 1;
        return tf.variable(tf.randomNormal(shape, 0, scale, 'float32', seed * 100 + counter), true, `${prefix}-${counter}`);
      };
      const v = {
        embed: weight([vocabulary, d], 1 / Math.sqrt(d)),
        position: weight([context, d], 0.02),
        q: weight([d, d], 1 / Math.sqrt(d)),
        k: weight([d, d], 1 / Math.sqrt(d)),
        value: weight([d, d], 1 / Math.sqrt(d)),
        projection: weight([d, d], 1 / Math.sqrt(d)),
        up: weight([d, 4 * d], 1 / Math.sqrt(d)),
        down: weight([4 * d, d], 1 / Math.sqrt(4 * d)),
        head: weight([d, vocabulary], 1 / Math.sqrt(d)),
        norm1: tf.variable(tf.ones([d]), true, `${prefix}-norm1`),
        norm2: tf.variable(tf.ones([d]), true, `${prefix}-norm2`),
      };
      const layerNorm = (x: tf.Tensor, scale: tf.Tensor): tf.Tensor => {
        const moments = tf.moments(x, -1, true);
        return tf.mul(tf.div(tf.sub(x, moments.mean), tf.sqrt(tf.add(moments.variance, 1e-5))), scale);
      };
      // Causal mask: −1e9 above the diagonal.
      const mask = tf.tidy(() => tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([context, context]), -1, 0)), -1e9));
      const logitsOf = (tokens: Int32Array, count: number): tf.Tensor => {
        const oneHotTokens = tf.cast(tf.oneHot(tf.tensor2d(tokens, [count, context], 'int32'), vocabulary), 'float32');
        const x = tf.add(capture.dense('embed', oneHotTokens, v.embed), v.position);
        const h = layerNorm(x, v.norm1);
        const q = capture.dense('q', h, v.q);
        const k = capture.dense('k', h, v.k);
        const values = capture.dense('v', h, v.value);
        const scores = tf.add(tf.div(tf.matMul(q, tf.transpose(k, [0, 2, 1])), Math.sqrt(d)), mask);
        const attended = tf.add(x, capture.dense('projection', tf.matMul(tf.softmax(scores), values), v.projection));
        const hidden = tf.relu(capture.dense('up', layerNorm(attended, v.norm2), v.up));
        const block = tf.add(attended, capture.dense('down', hidden, v.down));
        return capture.dense('head', block, v.head);
      };
      const lossOn = (tokens: { inputs: Int32Array; targets: Int32Array }, count: number): tf.Scalar => {
        const logits = tf.reshape(logitsOf(tokens.inputs, count), [count * context, vocabulary]);
        const labels = tf.cast(tf.oneHot(tf.tensor1d(tokens.targets, 'int32'), vocabulary), 'float32');
        return tf.losses.softmaxCrossEntropy(labels, logits) as tf.Scalar;
      };
      const batchesByStep = new Map<number, { inputs: Int32Array; targets: Int32Array }>();
      const testWindows = sampleWindows(corpus.test, sizes.testWindows, context, seededRandom(7));
      return {
        target: capture,
        variables: Object.values(v),
        loss(step) {
          // Batches are drawn in step order; a step asked for again (cost measurements) reuses its batch.
          let tokens = batchesByStep.get(step);
          if (tokens === undefined) {
            tokens = sampleWindows(corpus.train, batchSize, context, random);
            batchesByStep.clear();
            batchesByStep.set(step, tokens);
          }
          return lossOn(tokens, batchSize);
        },
        evaluate() {
          const loss = tf.tidy(() => lossOn(testWindows, sizes.testWindows).dataSync()[0] as number);
          return { loss, metric: loss };
        },
        dispose() {
          capture.release();
          tf.dispose([mask, ...Object.values(v)]);
        },
      };
    },
  };
}
