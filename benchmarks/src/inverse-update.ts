/**
 * Benchmark `inverse-update`: the O(d²) MKOR inverse-factor update (`updateInverseFactor` of
 * `@mkor/sherman-morrison`, each form) against the exact O(d³) damped inverse of the same factor
 * (`dampedInverse` of `@mkor/linalg`), side by side in one run on the wasm backend; fitted cost
 * exponents; and the memory bandwidth the update achieves against the machine's, measured in
 * the same run.
 *
 * Run: `npm run bench:inverse-update` in `benchmarks/` (build the packages first).
 */
import { dampedInverse } from '@mkor/linalg';
import { INVERSE_UPDATE_FORMS, type InverseUpdateForm, updateInverseFactor } from '@mkor/sherman-morrison';
import * as tf from '@tensorflow/tfjs-core';

import {
  type Timing,
  describeEnvironment,
  environmentTable,
  fittedExponent,
  forceCompletion,
  formatNumber,
  formatTiming,
  kernelTraffic,
  markdownTable,
  measureMemoryBandwidth,
  measure,
  parseOptions,
  publishReport,
  useBackend,
} from './lib';

const options = parseOptions();
await useBackend('wasm');

const sizes = options.smoke ? [64, 128] : [256, 512, 1024, 2048];
const damping = 1e-3;
const updateRepeats = options.smoke ? { warmup: 1, repeats: 3 } : { warmup: 3, repeats: 15 };
const inverseRepeats = (d: number): { warmup: number; repeats: number } =>
  options.smoke ? { warmup: 1, repeats: 2 } : { warmup: 1, repeats: d >= 2048 ? 3 : 5 };
const bandwidthElements = options.smoke ? 2 ** 20 : 2 ** 24;

interface SizeResult {
  readonly d: number;
  readonly update: Record<InverseUpdateForm, Timing>;
  /** Bytes the update's kernels move, by form, and the kernels' names. */
  readonly traffic: Record<InverseUpdateForm, { bytes: number; kernels: string[] }>;
  readonly inverse: Timing;
  /** GB/s of `tf.add` of two d × d tensors: an elementwise kernel on the update's working set. */
  readonly addGigabytesPerSecond: number;
}

const results: SizeResult[] = [];
for (const d of sizes) {
  // A well-conditioned SPD factor: the covariance of 2d Gaussian samples (eigenvalues ≈ 0.09–2.9).
  const factor = tf.tidy(() => {
    const samples = tf.randomNormal([d, 2 * d], 0, 1, 'float32', d);
    return tf.div(tf.matMul(samples, tf.transpose(samples)), tf.scalar(2 * d)) as tf.Tensor2D;
  });
  const inverse = dampedInverse(factor, damping);
  const v = tf.randomNormal([d], 0, 1 / Math.sqrt(d), 'float32', d + 1) as tf.Tensor1D;

  const update = {} as Record<InverseUpdateForm, Timing>;
  const traffic = {} as SizeResult['traffic'];
  for (const form of INVERSE_UPDATE_FORMS) {
    const run = (): tf.Tensor2D => updateInverseFactor(inverse, v, { form, checkFinite: false });
    update[form] = measure(() => {
      const updated = run();
      forceCompletion(updated);
      updated.dispose();
    }, updateRepeats);
    const kernels = await kernelTraffic(run);
    traffic[form] = { bytes: kernels.reduce((n, k) => n + k.bytes, 0), kernels: kernels.map((k) => k.name) };
  }
  const inverseTiming = measure(() => {
    const exact = dampedInverse(factor, damping);
    forceCompletion(exact);
    exact.dispose();
  }, inverseRepeats(d));
  const add = measure(() => {
    const sum = tf.add(inverse, factor);
    forceCompletion(sum);
    sum.dispose();
  }, updateRepeats);
  const addGigabytesPerSecond = (3 * d * d * 4) / (add.medianMs * 1e6);
  results.push({ d, update, traffic, inverse: inverseTiming, addGigabytesPerSecond });
  tf.dispose([factor, inverse, v]);
  console.error(`d = ${d} done`);
}
const bandwidths = measureMemoryBandwidth(bandwidthElements, options.smoke ? { warmup: 1, repeats: 3 } : { warmup: 2, repeats: 9 });
const environment = describeEnvironment(['@mkor/linalg', '@mkor/sherman-morrison', '@tensorflow/tfjs-backend-wasm']);

const costTable = markdownTable(
  [
    'd',
    ...INVERSE_UPDATE_FORMS.map((form) => `update '${form}' ms`),
    '`dampedInverse` ms',
    "inverse / update 'exact'",
  ],
  results.map((r) => [
    String(r.d),
    ...INVERSE_UPDATE_FORMS.map((form) => formatTiming(r.update[form])),
    formatTiming(r.inverse),
    `${formatNumber(r.inverse.medianMs / r.update.exact.medianMs)}×`,
  ]),
);

const exponentTable = markdownTable(
  ['operation', `fitted exponent p (time ∝ dᵖ, d = ${sizes.join(', ')})`],
  [
    ...INVERSE_UPDATE_FORMS.map((form) => [
      `update '${form}'`,
      formatNumber(fittedExponent(sizes, results.map((r) => r.update[form].medianMs))),
    ]),
    ['`dampedInverse`', formatNumber(fittedExponent(sizes, results.map((r) => r.inverse.medianMs)))],
  ],
);

const bandwidthTable = markdownTable(
  ['probe', 'bytes moved', 'median ms (IQR)', 'GB/s'],
  bandwidths.map((b) => [b.name, formatNumber(b.bytes), formatTiming(b.timing), formatNumber(b.gigabytesPerSecond)]),
);
const wasmAdd = bandwidths[2]?.gigabytesPerSecond ?? Number.NaN;

const trafficRows: string[][] = [];
for (const r of results) {
  const minimumBytes = 2 * r.d * r.d * 4;
  for (const form of INVERSE_UPDATE_FORMS) {
    const { bytes } = r.traffic[form];
    const seconds = r.update[form].medianMs / 1e3;
    const achieved = bytes / seconds / 1e9;
    trafficRows.push([
      String(r.d),
      `'${form}'`,
      formatNumber(bytes / minimumBytes),
      formatNumber(minimumBytes / seconds / 1e9),
      formatNumber(achieved),
      formatNumber(r.addGigabytesPerSecond),
      `${formatNumber((100 * achieved) / r.addGigabytesPerSecond)} %`,
      `${formatNumber((100 * achieved) / wasmAdd)} %`,
    ]);
  }
}
const trafficTable = markdownTable(
  [
    'd',
    'form',
    'bytes moved / minimum',
    'effective GB/s (minimum bytes)',
    'achieved GB/s (counted bytes)',
    '`tf.add` d × d GB/s',
    'achieved / `tf.add` d × d',
    'achieved / `tf.add` 64 MiB',
  ],
  trafficRows,
);
const kernelLists = INVERSE_UPDATE_FORMS.map(
  (form) => `- '${form}': ${(results[0]?.traffic[form].kernels ?? []).join(', ')}`,
).join('\n');

publishReport(
  'inverse-update',
  options,
  `# inverse-update: MKOR's O(d²) inverse-factor update against an exact O(d³) inverse${options.smoke ? ' (smoke run: tiny sizes, numbers meaningless)' : ''}

Times are the median of repeated runs, with the interquartile range in brackets, in
milliseconds, all measured in this one run. Each timed run ends by reading back one element of
the result (which forces completion without copying the result out). The update runs with
\`checkFinite: false\`; \`dampedInverse\` (method \`'schur'\`) inverts the same factor with damping
${damping}.

## Cost

${costTable}

${exponentTable}

## Memory bandwidth of the update

The update must at least read F⁻¹ and write the result: 2·d²·4 bytes ("minimum"). The kernels
it actually runs (profiled with \`tf.profile\`; each kernel counted as reading its inputs once and
writing its output once, reshapes free) are:

${kernelLists}

${trafficTable}

"\`tf.add\` d × d" is an elementwise add of two d × d tensors timed at each size: the same
working set as the update, so it shows what an elementwise wasm kernel reaches there (from cache
when 3·d²·4 bytes fit in it). Machine bandwidth, measured in the same run on ${formatNumber((bandwidthElements * 4) / 2 ** 20)} MiB arrays:

${bandwidthTable}

## Environment

${environmentTable(environment)}
`,
);
