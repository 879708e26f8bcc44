/**
 * Benchmark `engines`: the engines of `@mkor/engine` side by side in one run — cpu, wasm as
 * shipped (tfjs-backend-wasm 4.22's own kernels), wasm + `@mkor/wasm-kernels`, and wasm-native
 * (the same with `@mkor/openblas`'s gemm) when its addon is built:
 *
 * - forward + backward (`tf.variableGrads`) of the Fashion-MNIST MLP 784-512-512-10 (ReLU,
 *   softmax cross-entropy) at batch 256 on real Fashion-MNIST rows, ms per step;
 * - the matrix products of that step (each layer's forward product, weight gradient xᵀ·dy and,
 *   past the first layer, input gradient dy·Wᵀ) timed one by one, as GFLOP/s, with OpenBLAS
 *   called directly on the same shapes as the machine's reference;
 * - one training step (forward + backward + Adam) of the CNN of the benchmark suites, batch 64.
 *
 * Run: `npm run bench:engines` in `benchmarks/` (build the packages first; for wasm-native also
 * `npm run build:native -w @mkor/openblas`). OpenBLAS reads OPENBLAS_CORETYPE once at load.
 */
// The @tensorflow/tfjs bundle registers the gradients (tfjs-core alone registers none) and the layers API.
import '@tensorflow/tfjs';
// Registered here for 'wasm as shipped'; the engines import it themselves.
import '@tensorflow/tfjs-backend-wasm';

import os from 'node:os';

import { loadFashionMnist } from '@mkor/datasets';
import { type EngineName, type NativeGemmLoad, useEngine } from '@mkor/engine';
import { unregisterWasmKernels } from '@mkor/wasm-kernels';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

import {
  type Timing,
  describeEnvironment,
  environmentTable,
  forceCompletion,
  formatNumber,
  formatTiming,
  markdownTable,
  measure,
  parseOptions,
  publishReport,
} from './lib';
import { TASK_SIZES } from './suites/context';
import { cnnTask } from './suites/tasks';

const options = parseOptions();
const batchSize = options.smoke ? 32 : 256;
const widths = [784, 512, 512, 10];
const repeats = options.smoke ? { warmup: 1, repeats: 2 } : { warmup: 2, repeats: 7 };
const productRepeats = options.smoke ? { warmup: 1, repeats: 2 } : { warmup: 2, repeats: 9 };
const cnnSizes = { ...TASK_SIZES[options.smoke ? 'smoke' : 'modest'], trainImages: options.smoke ? 512 : 2048, testImages: 256 };

/** An engine as this benchmark runs it; `'wasm-shipped'` is the wasm backend without the kernels. */
type BenchEngine = 'cpu' | 'wasm-shipped' | 'wasm' | 'wasm-native';

async function activate(engine: BenchEngine): Promise<string> {
  if (engine === 'wasm-shipped') {
    unregisterWasmKernels();
    if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend failed to initialise');
    return 'tfjs-backend-wasm 4.22 kernels';
  }
  const choice = await useEngine(engine as EngineName, { log: () => undefined });
  if (choice.engine !== engine) throw new Error(`not available: ${choice.reason}`);
  return choice.reason;
}

const data = loadFashionMnist({ trainLimit: batchSize, testLimit: 1 });

/** Forward + backward of the MLP: ms per step. */
function mlpStep(): Timing {
  const init = (offset: number) => tfl.initializers.glorotUniform({ seed: offset });
  const model = tfl.sequential({
    layers: widths.slice(1).map((units, i) =>
      tfl.layers.dense({
        units,
        activation: i < widths.length - 2 ? 'relu' : 'linear',
        kernelInitializer: init(i + 1),
        ...(i === 0 ? { inputShape: [784] } : {}),
      }),
    ),
  });
  const x = tf.tensor2d(data.train.images, [batchSize, 784]);
  const y = tf.tidy(() => tf.oneHot(tf.tensor1d(data.train.labels, 'int32'), 10).toFloat());
  const timing = measure(() => {
    const { value, grads } = tf.variableGrads(
      () => tf.losses.softmaxCrossEntropy(y, model.apply(x) as tf.Tensor) as tf.Scalar,
    );
    for (const g of Object.values(grads)) forceCompletion(g);
    tf.dispose([value, ...Object.values(grads)]);
  }, repeats);
  tf.dispose([x, y]);
  model.dispose();
  return timing;
}

/** One product of the step: C (m×n) = op(A)·op(B), inner dimension k. */
interface Product {
  readonly name: string;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly transposeA: boolean;
  readonly transposeB: boolean;
}

const products: Product[] = widths.slice(1).flatMap((out, i) => {
  const inp = widths[i]!;
  const layer = `layer ${i + 1} (${inp}→${out})`;
  const list: Product[] = [
    { name: `${layer} forward x·W`, m: batchSize, n: out, k: inp, transposeA: false, transposeB: false },
    { name: `${layer} weight gradient xᵀ·dy`, m: inp, n: out, k: batchSize, transposeA: true, transposeB: false },
  ];
  if (i > 0) list.push({ name: `${layer} input gradient dy·Wᵀ`, m: batchSize, n: inp, k: out, transposeA: false, transposeB: true });
  return list;
});
const stepFlops = products.reduce((sum, p) => sum + 2 * p.m * p.n * p.k, 0);

/** Stored operand shapes of a product (transposed ones stored transposed). */
function operandShapes(p: Product): [number[], number[]] {
  return [p.transposeA ? [p.k, p.m] : [p.m, p.k], p.transposeB ? [p.n, p.k] : [p.k, p.n]];
}

/** The products of the step one by one on the active engine: ms each. */
function productTimes(): number[] {
  return products.map((p) => {
    const [aShape, bShape] = operandShapes(p);
    const [a, b] = [tf.randomNormal(aShape, 0, 1, 'float32', 1), tf.randomNormal(bShape, 0, 1, 'float32', 2)];
    const timing = measure(() => {
      const c = tf.matMul(a, b, p.transposeA, p.transposeB);
      forceCompletion(c);
      c.dispose();
    }, productRepeats);
    tf.dispose([a, b]);
    return timing.medianMs;
  });
}

/** The same products by OpenBLAS directly on plain memory: the machine's reference, or why not. */
async function openBlasTimes(): Promise<{ times: number[]; library: string } | { reason: string }> {
  const specifier = '@mkor/openblas';
  let module: { loadOpenBlasGemm(): NativeGemmLoad };
  try {
    module = (await import(specifier)) as typeof module;
  } catch (error) {
    return { reason: `@mkor/openblas not installed (${String(error).split('\n')[0]})` };
  }
  const load = module.loadOpenBlasGemm();
  if ('reason' in load) return { reason: load.reason };
  const gemm = load.gemm;
  const times = products.map((p) => {
    const [aSize, bSize, cSize] = [p.m * p.k, p.k * p.n, p.m * p.n];
    const heap = new ArrayBuffer(4 * (aSize + bSize + cSize));
    new Float32Array(heap).forEach((_, i, all) => (all[i] = Math.sin(i)));
    const call = {
      aOffset: 0,
      bOffset: 4 * aSize,
      cOffset: 4 * (aSize + bSize),
      batch: 1,
      m: p.m,
      n: p.n,
      k: p.k,
      transposeA: p.transposeA,
      transposeB: p.transposeB,
      aBatchStride: 0,
      bBatchStride: 0,
      cBatchStride: 0,
    };
    return measure(() => gemm(heap, call), productRepeats).medianMs;
  });
  return { times, library: `${load.library}, ${load.threads} threads` };
}

/** One training step (forward + backward + Adam) of the suites' CNN. */
function cnnStep(): Timing {
  const instance = cnnTask(cnnSizes).create(1);
  const optimizer = tf.train.adam(1e-3);
  let step = 0;
  const timing = measure(() => {
    const loss = optimizer.minimize(() => instance.loss(step++), true, instance.variables)!;
    loss.dataSync();
    loss.dispose();
  }, repeats);
  optimizer.dispose();
  instance.dispose();
  return timing;
}

interface EngineResult {
  readonly engine: BenchEngine;
  readonly note: string;
  readonly mlp?: Timing;
  readonly products?: number[];
  readonly cnn?: Timing;
}

const engines: BenchEngine[] = ['cpu', 'wasm-shipped', 'wasm', 'wasm-native'];
const results: EngineResult[] = [];
for (const engine of engines) {
  let note: string;
  try {
    note = await activate(engine);
  } catch (error) {
    results.push({ engine, note: error instanceof Error ? error.message : String(error) });
    continue;
  }
  process.stderr.write(`engines: ${engine}…\n`);
  const mlp = mlpStep();
  const times = productTimes();
  // The shipped wasm backend cannot train Conv2D (no Conv2DBackpropFilter).
  const cnn = engine === 'wasm-shipped' ? undefined : cnnStep();
  results.push({ engine, note, mlp, products: times, cnn });
}
const openBlas = await openBlasTimes();

const byName = (engine: BenchEngine) => results.find((r) => r.engine === engine);
const shippedMs = byName('wasm-shipped')?.mlp?.medianMs;
const cpuCnnMs = byName('cpu')?.cnn?.medianMs;
const gflops = (ms: number, flops: number) => flops / (ms * 1e6);
const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

const summary = markdownTable(
  ['engine', `MLP fwd+bwd, ms/step`, 'vs wasm as shipped', 'step products, ms', 'GFLOP/s', `CNN step (batch ${cnnSizes.cnnBatchSize}), ms`, 'CNN vs cpu'],
  results.map((r) =>
    r.mlp === undefined
      ? [r.engine, `not run: ${r.note}`, '', '', '', '', '']
      : [
          r.engine,
          formatTiming(r.mlp),
          shippedMs === undefined ? '' : `${formatNumber(shippedMs / r.mlp.medianMs)}×`,
          formatNumber(sum(r.products!)),
          formatNumber(gflops(sum(r.products!), stepFlops)),
          r.cnn === undefined ? 'cannot train Conv2D' : formatTiming(r.cnn),
          r.cnn === undefined || cpuCnnMs === undefined ? '' : `${formatNumber(cpuCnnMs / r.cnn.medianMs)}×`,
        ],
  ),
);

const ran = results.filter((r) => r.products !== undefined);
const productTable = markdownTable(
  ['product', 'GFLOP', ...ran.map((r) => `${r.engine}, ms`), ...('times' in openBlas ? ['OpenBLAS direct, ms'] : [])],
  products.map((p, i) => [
    `${p.name}: ${p.m}×${p.n}, k ${p.k}`,
    formatNumber((2 * p.m * p.n * p.k) / 1e9),
    ...ran.map((r) => formatNumber(r.products![i]!)),
    ...('times' in openBlas ? [formatNumber(openBlas.times[i]!)] : []),
  ]),
);
const openBlasLine =
  'times' in openBlas
    ? `OpenBLAS called directly on the same shapes (${openBlas.library}): ${formatNumber(sum(openBlas.times))} ms, ${formatNumber(gflops(sum(openBlas.times), stepFlops))} GFLOP/s.`
    : `OpenBLAS reference not measured: ${openBlas.reason}.`;

const environment = describeEnvironment(['@tensorflow/tfjs-backend-wasm', '@tensorflow/tfjs-backend-cpu', '@mkor/engine', '@mkor/wasm-kernels']);
const report = `# Engines: forward + backward, matrix products and a CNN step side by side

MLP 784-512-512-10 (ReLU, softmax cross-entropy), batch ${batchSize} of Fashion-MNIST training rows, forward + backward by
\`tf.variableGrads\`; CNN of the suites (${cnnTask(cnnSizes).description}) one training step with Adam. Medians (interquartile range) of
${repeats.repeats} timed runs after ${repeats.warmup} warm-up runs. The "step products" are the ${products.length} matrix products of one MLP
step (${formatNumber(stepFlops / 1e9)} GFLOP) timed one by one on random operands.

${summary}

${openBlasLine}

${productTable}

Engines: ${results.map((r) => `**${r.engine}**: ${r.note}`).join('; ')}.

OPENBLAS_CORETYPE: ${process.env.OPENBLAS_CORETYPE ?? '(unset)'}; load average (1, 5, 15 min) at the end: ${os.loadavg().map((l) => l.toFixed(2)).join(', ')}.

${environmentTable(environment)}
`;
publishReport('engines', options, report);
