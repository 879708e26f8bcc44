/**
 * Benchmark `mkor-step`: what MKOR's own step costs against the forward + backward it follows, and
 * what its low-rank factors change, side by side in one run (issue "An MKOR step cheaper than
 * forward + backward"):
 *
 * 1. step cost on the Fashion-MNIST MLP 784-512-512-10 (ReLU, softmax cross-entropy), batch 256 and
 *    32: each optimizer's forward + backward (`computeGradients`; MKOR's captures its statistics)
 *    and step (`applyGradients`, MKOR's refresh every f = 10 steps amortised over 10 steps), for
 *    MKOR with dense factors and with low-rank ones (`factors: 'auto'`), Adam and LAMB;
 * 2. one factor refresh at d = 512 … 4096: MKOR dense (the block's whole refresh: stabiliser,
 *    Sherman–Morrison update, reset check) with the fused kernel and with tfjs's kernels, MKOR
 *    low-rank, KFAC (moving average and damped inverse), and the factor memory of each form;
 * 3. time and steps to a training-loss EMA (β 0.9) ≤ 0.45 with ≥ 85 % test accuracy on the full
 *    Fashion-MNIST, 2 epochs, lr 3e-3 (Adam as MKOR's backend), seeds 0–2: MKOR dense, MKOR
 *    low-rank, Adam. The test accuracy is evaluated only once the EMA is below 0.45, off the clock.
 *
 * Run: `npm run bench:mkor-step -- --engine wasm-native` in `benchmarks/` (build the packages and
 * `npm run build:native -w @mkor/openblas` first). `--smoke` runs every part in a few steps.
 */
// The @tensorflow/tfjs bundle registers the gradients (tfjs-core alone registers none) and the layers API.
import '@tensorflow/tfjs';

import { FUSED_KERNELS, TransformOptimizer } from '@mkor/core';
import { loadFashionMnist, splitToTensors } from '@mkor/datasets';
import { adam, lamb } from '@mkor/first-order';
import { dampedInverse } from '@mkor/linalg';
import { MkorOptimizer, type MkorOptimizerOptions, stabilizedRefresh } from '@mkor/mkor';
import { lowRankIdentity, updateLowRankInverse } from '@mkor/sherman-morrison';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

import {
  describeEnvironment,
  environmentTable,
  forceCompletion,
  formatNumber,
  markdownTable,
  measure,
  parseOptions,
  publishReport,
  summarize,
  useBackend,
} from './lib';

const options = parseOptions();
const smoke = options.smoke;
await useBackend('wasm');

const WIDTHS = [784, 512, 512, 10];
const LEARNING_RATE = 3e-3;
const RANK = 32;
const TARGET_EMA = 0.45;
const TARGET_ACCURACY = 0.85;
const SEEDS = smoke ? [0] : [0, 1, 2];
const EPOCHS = smoke ? 1 : 2;

const data = loadFashionMnist(smoke ? { trainLimit: 2048, testLimit: 500 } : {});
const train = splitToTensors(data.train, { flatten: true });
const test = splitToTensors(data.test, { flatten: true });

/** The MLP, seeded; it outputs logits (the loss applies the softmax). */
function mlp(seed: number): tfl.Sequential {
  return tfl.sequential({
    layers: WIDTHS.slice(1).map((units, i) =>
      tfl.layers.dense({
        units,
        activation: i < WIDTHS.length - 2 ? 'relu' : 'linear',
        kernelInitializer: tfl.initializers.glorotUniform({ seed: 10 * seed + i }),
        ...(i === 0 ? { inputShape: [784] } : {}),
      }),
    ),
  });
}

function lossOf(model: tfl.Sequential, x: tf.Tensor, y: tf.Tensor): tf.Scalar {
  return tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar;
}

/** The optimizers compared (the MKOR ones with Adam as backend, at the same learning rate). */
const OPTIMIZERS: { name: string; create: (model: tfl.Sequential) => tf.Optimizer }[] = [
  { name: 'MKOR, dense factors', create: (model) => new MkorOptimizer(model, { backend: adam({ learningRate: LEARNING_RATE }), factors: 'dense' }) },
  {
    name: `MKOR, low-rank factors (auto, r = ${RANK})`,
    create: (model) => new MkorOptimizer(model, { backend: adam({ learningRate: LEARNING_RATE }), factors: 'auto', rank: RANK } satisfies MkorOptimizerOptions),
  },
  { name: 'Adam', create: () => new TransformOptimizer(adam({ learningRate: LEARNING_RATE })) },
  { name: 'LAMB', create: () => new TransformOptimizer(lamb({ learningRate: LEARNING_RATE })) },
];

// ---- 1. Step cost --------------------------------------------------------------------------

/**
 * Each optimizer's forward + backward (`computeGradients`: MKOR's includes the capture of its
 * statistics) and step (`applyGradients`), ms per step over rounds of 10 steps (MKOR refreshes its
 * factors on one of each ten), and the step against Adam's forward + backward (the plain model's).
 */
function stepCosts(batch: number): string[][] {
  const x = tf.slice(train.x, [0, 0], [batch, 784]);
  const y = tf.slice(train.y, [0, 0], [batch, 10]);
  const measured = OPTIMIZERS.map(({ name, create }) => {
    const model = mlp(0);
    const optimizer = create(model) as TransformOptimizer<unknown>;
    const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const rounds = smoke ? 1 : 4;
    const gradientRounds: number[] = [];
    const stepRounds: number[] = [];
    // Round 0 is warm-up.
    for (let round = 0; round <= rounds; round++) {
      let gradientMs = 0;
      let stepMs = 0;
      for (let i = 0; i < 10; i++) {
        const start = performance.now();
        const { value, grads } = optimizer.computeGradients(() => lossOf(model, x, y), variables);
        for (const t of Object.values(grads)) forceCompletion(t);
        const middle = performance.now();
        optimizer.applyGradients(grads);
        forceCompletion(variables[0]!);
        const end = performance.now();
        tf.dispose([value, ...Object.values(grads)]);
        gradientMs += middle - start;
        stepMs += end - middle;
      }
      if (round > 0) {
        gradientRounds.push(gradientMs / 10);
        stepRounds.push(stepMs / 10);
      }
    }
    optimizer.dispose();
    model.dispose();
    return { name, gradientMs: summarize(gradientRounds).median, stepMs: summarize(stepRounds).median };
  });
  tf.dispose([x, y]);
  const plain = (measured.find((m) => m.name === 'Adam') as (typeof measured)[number]).gradientMs;
  return measured.map(({ name, gradientMs, stepMs }) => [name, formatNumber(gradientMs), formatNumber(stepMs), `${formatNumber(stepMs / plain)}×`]);
}

// ---- 2. One refresh, and factor memory --------------------------------------------------------

/** `fn()` with the fused kernels of the current backend unregistered (tfjs's kernels run instead). */
function withoutFusedKernels<T>(fn: () => T): T {
  const backend = tf.getBackend();
  const saved = Object.values(FUSED_KERNELS).flatMap((name) => {
    const config = tf.getKernel(name, backend);
    if (config !== undefined) tf.unregisterKernel(name, backend);
    return config === undefined ? [] : [config];
  });
  try {
    return fn();
  } finally {
    saved.forEach((config) => tf.registerKernel(config));
  }
}

/** ms of the MKOR block's refresh of a dense d × d input factor (stabiliser in, as by default). */
function denseRefreshMs(d: number, v: tf.Tensor1D, repeats: { warmup: number; repeats: number }): number {
  const state = { inputInverse: tf.eye(d) as tf.Tensor2D, outputInverse: tf.eye(1) as tf.Tensor2D };
  const g = tf.ones([1]) as tf.Tensor1D;
  const statistics = { a: v, g, captured: { a: v, g, rows: 1, samples: 1, step: 1 } };
  const update = { form: 'exact', gamma: 0.9, factorPrecision: 'float32', stabilizer: { epsilon: 100, zeta: 0.1, norm: 'inf' } } as const;
  const ms = measure(() => {
    const refreshed = stabilizedRefresh(state, statistics, update);
    forceCompletion(refreshed.state.inputInverse as tf.Tensor);
    tf.dispose([...Object.values(refreshed.state), ...Object.values(refreshed.events ?? {})].filter((t): t is tf.Tensor => t instanceof tf.Tensor));
  }, repeats).medianMs;
  tf.dispose([state.inputInverse, state.outputInverse, g]);
  return ms;
}

function refreshCosts(): string[][] {
  const sizes = smoke ? [256] : [512, 1024, 2048, 4096];
  return sizes.map((d) => {
    const v = tf.randomNormal([d], 0, 1, 'float32', 3) as tf.Tensor1D;
    const repeats = { warmup: 1, repeats: smoke ? 2 : 5 };
    const dense = tf.eye(d) as tf.Tensor2D;
    const denseMs = denseRefreshMs(d, v, repeats);
    const unfusedMs = withoutFusedKernels(() => denseRefreshMs(d, v, repeats));
    const lowRank = lowRankIdentity(d, RANK);
    const lowRankMs = measure(() => {
      const { inverse, dropped } = updateLowRankInverse(lowRank, v);
      forceCompletion(inverse.basis);
      tf.dispose([inverse.scale, inverse.basis, inverse.weights, dropped]);
    }, repeats).medianMs;
    const covariance = tf.tidy(() => {
      const rows = tf.randomNormal([2 * d, d], 0, 1, 'float32', 5);
      return tf.div(tf.matMul(rows, rows, true, false), 2 * d) as tf.Tensor2D;
    });
    const kfacMs = measure(
      () => {
        const factor = tf.tidy(() => tf.add(tf.mul(dense, 0.95), tf.mul(covariance, 0.05)) as tf.Tensor2D);
        const inverse = dampedInverse(factor, 1e-3);
        forceCompletion(inverse);
        tf.dispose([factor, inverse]);
      },
      { warmup: 1, repeats: smoke ? 1 : 3 },
    ).medianMs;
    const denseBytes = d * d * 4;
    const lowRankBytes = (d * RANK + RANK + 1) * 4;
    tf.dispose([v, dense, covariance, lowRank.scale, lowRank.basis, lowRank.weights]);
    return [
      String(d),
      formatNumber(denseMs),
      formatNumber(unfusedMs),
      formatNumber(lowRankMs),
      formatNumber(kfacMs),
      `${formatNumber(kfacMs / denseMs)}×`,
      `${formatNumber(kfacMs / lowRankMs)}×`,
      `${formatNumber(denseBytes / 2 ** 20)} MiB`,
      `${formatNumber(lowRankBytes / 2 ** 20)} MiB`,
    ];
  });
}

// ---- 3. Time to target ---------------------------------------------------------------------------

interface TargetRun {
  readonly steps: number | null;
  readonly seconds: number | null;
  readonly finalEma: number;
  readonly finalAccuracy: number;
  readonly msPerStep: number;
}

function testAccuracy(model: tfl.Sequential): number {
  return tf.tidy(() => {
    const predicted = tf.argMax(model.predict(test.x, { batchSize: 2000 }) as tf.Tensor, 1);
    return tf.mean(tf.cast(tf.equal(predicted, tf.argMax(test.y, 1)), 'float32')).dataSync()[0] as number;
  });
}

/** A seeded permutation of 0…n−1. */
function permutation(n: number, seed: number): Int32Array {
  const order = Int32Array.from({ length: n }, (_, i) => i);
  let state = (seed * 2654435761 + 1) >>> 0;
  for (let i = n - 1; i > 0; i--) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const j = state % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

function timeToTarget(create: (model: tfl.Sequential) => tf.Optimizer, seed: number): TargetRun {
  const model = mlp(seed);
  const optimizer = create(model);
  const batch = 256;
  const count = data.train.count;
  let ema: number | null = null;
  let clock = 0;
  let steps: number | null = null;
  let seconds: number | null = null;
  let step = 0;
  for (let epoch = 0; epoch < EPOCHS; epoch++) {
    const order = permutation(count, 100 * seed + epoch);
    for (let start = 0; start + batch <= count; start += batch) {
      const indices = tf.tensor1d(order.subarray(start, start + batch), 'int32');
      const x = tf.gather(train.x, indices);
      const y = tf.gather(train.y, indices);
      const begin = performance.now();
      const loss = optimizer.minimize(() => lossOf(model, x, y), true) as tf.Scalar;
      const value = loss.dataSync()[0] as number;
      clock += performance.now() - begin;
      tf.dispose([indices, x, y, loss]);
      step += 1;
      ema = ema === null ? value : 0.9 * ema + 0.1 * value;
      // The EMA starts at the first loss (no bias from a zero start).
      if (steps === null && ema <= TARGET_EMA && testAccuracy(model) >= TARGET_ACCURACY) {
        steps = step;
        seconds = clock / 1000;
      }
    }
  }
  const result = { steps, seconds, finalEma: ema ?? Number.NaN, finalAccuracy: testAccuracy(model), msPerStep: clock / step };
  optimizer.dispose();
  model.dispose();
  return result;
}

function targetRows(): string[][] {
  return OPTIMIZERS.filter((o) => o.name !== 'LAMB').map(({ name, create }) => {
    const runs = SEEDS.map((seed) => timeToTarget(create, seed));
    const reached = runs.filter((r) => r.steps !== null);
    const mean = (values: number[]) => summarize(values).mean;
    return [
      name,
      `${reached.length}/${runs.length}`,
      runs.map((r) => (r.steps === null ? '–' : String(r.steps))).join(', '),
      reached.length === 0 ? '–' : `${formatNumber(mean(reached.map((r) => r.seconds as number)))} s`,
      formatNumber(mean(runs.map((r) => r.msPerStep))),
      formatNumber(mean(runs.map((r) => r.finalEma))),
      `${formatNumber(100 * mean(runs.map((r) => r.finalAccuracy)))} %`,
    ];
  });
}

const environment = describeEnvironment(['@mkor/mkor', '@mkor/sherman-morrison', '@mkor/first-order', '@tensorflow/tfjs-core']);
const sections = [
  `# mkor-step: MKOR's step against forward + backward, dense and low-rank factors\n`,
  `Engine: ${options.engine}. Fashion-MNIST MLP ${WIDTHS.join('-')}, Adam as MKOR's backend, lr ${LEARNING_RATE}, f = 10, low-rank window r = ${RANK} (\`factors: 'auto'\`: low-rank for a factor of size d > 4r).\n`,
];
for (const batch of smoke ? [32] : [256, 32]) {
  sections.push(`## Step cost, batch ${batch} (ms per step, medians of rounds of 10 steps: MKOR's refresh every 10 steps amortised)\n`);
  sections.push(markdownTable(['optimizer', 'forward + backward ms', 'optimizer step ms', 'step ÷ plain forward + backward (Adam’s)'], stepCosts(batch)));
}
sections.push(`## One factor refresh, and factor memory (one factor of size d)\n`);
sections.push(
  markdownTable(
    ['d', 'MKOR dense ms (fused kernel where the engine has it)', 'MKOR dense ms (tfjs kernels)', `MKOR low-rank (r = ${RANK}) ms`, 'KFAC (EMA + damped inverse) ms', 'KFAC ÷ MKOR dense', 'KFAC ÷ MKOR low-rank', 'dense memory', 'low-rank memory'],
    refreshCosts(),
  ),
);
sections.push(`## Time to a training-loss EMA (β 0.9) ≤ ${TARGET_EMA} with ≥ ${100 * TARGET_ACCURACY} % test accuracy, ${EPOCHS} epochs of ${data.train.count} images, batch 256, seeds ${SEEDS.join(', ')}\n`);
sections.push(markdownTable(['optimizer', 'reached', 'steps to target per seed', 'time to target (mean)', 'ms / step', 'final loss EMA', 'final test accuracy'], targetRows()));
sections.push(environmentTable(environment));
publishReport('mkor-step', options, sections.join('\n'));
tf.dispose([train.x, train.y, test.x, test.y]);
