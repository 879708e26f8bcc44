/**
 * Benchmark `openblas-gemm`: the matrix products of one training step of a 784-512-512-10 MLP at
 * batch 256 (forward, weight gradients, input gradients, with their transposes as the tfjs
 * gradients ask for them), computed by `@mkor/openblas` directly on the wasm backend's heap
 * against `tf.matMul` on the wasm backend as shipped and `tf.matMul` on the engine of `--engine`
 * (default `wasm`: with `@mkor/wasm-kernels`), side by side in one run.
 *
 * Run: `npm run bench:openblas-gemm` in `benchmarks/` (build the packages and
 * `npm run build:native -w @mkor/openblas` first). OpenBLAS reads OPENBLAS_CORETYPE once at load;
 * the report says which setting it ran under.
 */
// Registered here for 'wasm as shipped'; the engines import it themselves.
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { loadOpenBlasGemm, type HeapGemmCall } from '@mkor/openblas';

import {
  type Timing,
  describeEnvironment,
  environmentTable,
  formatNumber,
  formatTiming,
  markdownTable,
  measure,
  parseOptions,
  publishReport,
  useBackend,
} from './lib';

const options = parseOptions();
const batchSize = options.smoke ? 32 : 256;
const repeats = options.smoke ? { warmup: 1, repeats: 3 } : { warmup: 3, repeats: 15 };

const load = loadOpenBlasGemm();
if (load.gemm === null) throw new Error(`openblas-gemm: ${load.reason}`);
const gemm = load.gemm;

// The wasm backend as shipped first; the engine of --engine (which may register kernels) after.
if (!(await tf.setBackend('wasm'))) throw new Error('openblas-gemm: the wasm backend failed to initialise');
await tf.ready();

/** One product op(A)·op(B) of the step: C is m×n, the inner dimension k. */
interface Product {
  readonly name: string;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly transposeA: boolean;
  readonly transposeB: boolean;
}

// Layer widths 784 → 512 → 512 → 10. Forward z = x·W; weight gradient dW = xᵀ·dz (tfjs's
// matMul(x, dz, true, false)); input gradient dx = dz·Wᵀ (matMul(dz, W, false, true)), not needed
// for the first layer's input.
const widths = [784, 512, 512, 10];
const products: Product[] = [];
for (let layer = 0; layer < 3; layer++) {
  const [fanIn, fanOut] = [widths[layer] as number, widths[layer + 1] as number];
  products.push({ name: `forward ${layer + 1}: x·W`, m: batchSize, n: fanOut, k: fanIn, transposeA: false, transposeB: false });
}
for (let layer = 0; layer < 3; layer++) {
  const [fanIn, fanOut] = [widths[layer] as number, widths[layer + 1] as number];
  products.push({ name: `weight gradient ${layer + 1}: xᵀ·dz`, m: fanIn, n: fanOut, k: batchSize, transposeA: true, transposeB: false });
}
for (let layer = 1; layer < 3; layer++) {
  const [fanIn, fanOut] = [widths[layer] as number, widths[layer + 1] as number];
  products.push({ name: `input gradient ${layer + 1}: dz·Wᵀ`, m: batchSize, n: fanIn, k: fanOut, transposeA: false, transposeB: true });
}

/** The parts of tfjs-backend-wasm's backend that locate a tensor in its memory. */
interface WasmBackendMemory {
  readonly wasm: { readonly HEAPU8: Uint8Array };
  readonly dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
}
const backend = tf.backend() as unknown as WasmBackendMemory;
const offsetOf = (t: tf.Tensor): number => {
  const data = backend.dataIdMap.get(t.dataId);
  if (data === undefined) throw new Error('openblas-gemm: a tensor is not on the wasm backend');
  return data.memoryOffset;
};

interface Operands {
  readonly a: tf.Tensor2D;
  readonly b: tf.Tensor2D;
  readonly c: tf.Tensor2D;
  readonly call: HeapGemmCall;
}

const makeOperands = (): Operands[] => products.map((p, i) => {
  const seed = 2 * i + 1;
  const a = tf.randomUniform(p.transposeA ? [p.k, p.m] : [p.m, p.k], -1, 1, 'float32', seed) as tf.Tensor2D;
  const b = tf.randomUniform(p.transposeB ? [p.n, p.k] : [p.k, p.n], -1, 1, 'float32', seed + 1) as tf.Tensor2D;
  const c = tf.zeros([p.m, p.n]) as tf.Tensor2D;
  const call: HeapGemmCall = {
    aOffset: offsetOf(a),
    bOffset: offsetOf(b),
    cOffset: offsetOf(c),
    batch: 1,
    m: p.m,
    n: p.n,
    k: p.k,
    transposeA: p.transposeA,
    transposeB: p.transposeB,
    aBatchStride: 0,
    bBatchStride: 0,
    cBatchStride: p.m * p.n,
  };
  return { a, b, c, call };
});
const operands = makeOperands();

// The heap is read at every call: a wasm memory that grew has a new buffer.
const runOpenBlas = (o: Operands): void => gemm(backend.wasm.HEAPU8.buffer, o.call);
const runMatMul = (o: Operands): void => tf.matMul(o.a, o.b, o.call.transposeA, o.call.transposeB).dispose();

// Both compute the same product: their largest difference, against the products' scale.
const agreement = Math.max(
  ...operands.map((o) => {
    runOpenBlas(o);
    const reference = tf.matMul(o.a, o.b, o.call.transposeA, o.call.transposeB);
    const difference = tf.tidy(() => tf.max(tf.abs(tf.sub(o.c, reference))).dataSync()[0] as number);
    reference.dispose();
    return difference / Math.sqrt(o.call.k); // entries of A and B uniform in [-1, 1): |C| ~ √(k/9)
  }),
);

interface Row {
  readonly name: string;
  readonly flops: number;
  readonly openBlas: Timing;
  readonly matMul: Timing;
  engineMatMul?: Timing;
}

const rows: Row[] = products.map((p, i) => {
  const o = operands[i] as Operands;
  return { name: p.name, flops: 2 * p.m * p.n * p.k, openBlas: measure(() => runOpenBlas(o), repeats), matMul: measure(() => runMatMul(o), repeats) };
});
const step: Row = {
  name: '**all products of the step**',
  flops: rows.reduce((sum, row) => sum + row.flops, 0),
  openBlas: measure(() => operands.forEach(runOpenBlas), repeats),
  matMul: measure(() => operands.forEach(runMatMul), repeats),
};
tf.dispose(operands.flatMap((o) => [o.a, o.b, o.c]));

// tf.matMul again, on the engine of --engine, with fresh operands of that engine.
await useBackend('wasm');
const engineOperands = makeOperands();
rows.forEach((row, i) => {
  row.engineMatMul = measure(() => runMatMul(engineOperands[i] as Operands), repeats);
});
step.engineMatMul = measure(() => engineOperands.forEach(runMatMul), repeats);
tf.dispose(engineOperands.flatMap((o) => [o.a, o.b, o.c]));

const gflops = (row: Row, timing: Timing): string => formatNumber(row.flops / (timing.medianMs * 1e6));
const shape = (p: Product): string =>
  `${p.m}×${p.k}${p.transposeA ? ' (Aᵀ)' : ''} · ${p.k}×${p.n}${p.transposeB ? ' (Bᵀ)' : ''}`;
const table = markdownTable(
  [
    'product',
    'op(A) · op(B)',
    'OpenBLAS on the heap, ms (IQR)',
    'GFLOP/s',
    '`tf.matMul` wasm as shipped, ms (IQR)',
    'GFLOP/s',
    `\`tf.matMul\` on --engine ${options.engine}, ms (IQR)`,
    'GFLOP/s',
    'OpenBLAS speed-up: shipped / engine',
  ],
  [...rows, step].map((row, i) => [
    row.name,
    i < products.length ? shape(products[i] as Product) : `${formatNumber(row.flops / 1e9)} GFLOP`,
    formatTiming(row.openBlas),
    gflops(row, row.openBlas),
    formatTiming(row.matMul),
    gflops(row, row.matMul),
    formatTiming(row.engineMatMul as Timing),
    gflops(row, row.engineMatMul as Timing),
    `${formatNumber(row.matMul.medianMs / row.openBlas.medianMs)}× / ${formatNumber((row.engineMatMul as Timing).medianMs / row.openBlas.medianMs)}×`,
  ]),
);

const coreType = process.env.OPENBLAS_CORETYPE;
publishReport(
  'openblas-gemm',
  options,
  `# openblas-gemm: OpenBLAS on the wasm heap against \`tf.matMul\` on wasm${options.smoke ? ' (smoke run: batch 32, numbers meaningless)' : ''}

The matrix products of one training step of a 784-512-512-10 MLP at batch ${batchSize}: three
forward products, three weight gradients (Aᵀ, as tfjs's \`matMul(x, dz, true, false)\`) and two
input gradients (Bᵀ, \`matMul(dz, W, false, true)\`; the first layer's input needs none). Every
operand is a tensor of the wasm backend; OpenBLAS reads and writes them in the backend's memory,
\`tf.matMul\` allocates and frees its output, first on the wasm backend as shipped, then on the
engine of \`--engine\` (${options.engine}; \`wasm\` is the wasm backend with \`@mkor/wasm-kernels\`). Medians of ${repeats.repeats} repeats after
${repeats.warmup} warm-up run(s) (IQR in brackets), all measured in this one run.

- OpenBLAS: ${load.library}; **${load.threads} thread(s)**
- OPENBLAS_CORETYPE: **${coreType === undefined ? 'unset (OpenBLAS picks the kernels for this processor)' : coreType}**
- largest |OpenBLAS − tf.matMul| / √k over the products: ${agreement.toExponential(2)}

${table}

## Environment

${environmentTable(describeEnvironment(['@tensorflow/tfjs-backend-wasm', '@mkor/openblas']))}`,
);
