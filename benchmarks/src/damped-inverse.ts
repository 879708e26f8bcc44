/**
 * Benchmark `damped-inverse`: the methods of `@mkor/linalg`'s damped inverse side by side on the
 * wasm backend: the recursive Schur-complement inverse, Newton–Schulz from its default start,
 * and Newton–Schulz warm-started from the inverse of the factor one EMA step earlier (KFAC's
 * stale inverse). Cost as time and ratio to one `d × d` `tf.matMul`; accuracy as the float64
 * residual `‖I − (A + λI)X‖_F / √d`.
 *
 * Run: `npm run bench:damped-inverse` in `benchmarks/` (build the packages first).
 */
import { dampedInverse, newtonSchulzInverse } from '@mkor/linalg';
import * as tf from '@tensorflow/tfjs-core';

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
  useBackend,
} from './lib';

const options = parseOptions();
await useBackend('wasm');

const sizes = options.smoke ? [64, 128] : [128, 256, 512, 1024];
const damping = 1e-3;
const gamma = 0.95;
const repeats = options.smoke ? { warmup: 1, repeats: 2 } : { warmup: 1, repeats: 5 };

/** `‖I − A X‖_F / √d` in float64 from the float32 values of A and X (row-major, d × d). */
function relativeResidual(a: Float32Array, x: Float32Array, d: number): number {
  let sum = 0;
  const row = new Float64Array(d);
  for (let i = 0; i < d; i++) {
    row.fill(0);
    for (let k = 0; k < d; k++) {
      const aik = a[i * d + k] as number;
      for (let j = 0; j < d; j++) row[j] = (row[j] as number) + aik * (x[k * d + j] as number);
    }
    for (let j = 0; j < d; j++) sum += ((i === j ? 1 : 0) - (row[j] as number)) ** 2;
  }
  return Math.sqrt(sum / d);
}

/** The covariance `S Sᵀ / n` of n Gaussian samples of dimension d. */
function covariance(d: number, n: number, seed: number): tf.Tensor2D {
  return tf.tidy(() => {
    const samples = tf.randomNormal([d, n], 0, 1, 'float32', seed);
    return tf.div(tf.matMul(samples, tf.transpose(samples)), tf.scalar(n)) as tf.Tensor2D;
  });
}

type MethodResult =
  | { readonly timing: Timing; readonly iterations: number | undefined; readonly residual: number }
  | { readonly failure: string };

interface Row {
  readonly d: number;
  readonly kind: string;
  readonly matMul: Timing;
  readonly methods: Record<'schur' | 'cold' | 'warm', MethodResult>;
}

const rows: Row[] = [];
for (const d of sizes) {
  // Two factors KFAC meets: a well-conditioned covariance of 2d samples, and a rank-deficient one
  // of d/2 samples whose small eigenvalues are the damping alone (condition ≈ λmax/λ).
  for (const [kind, samples] of [
    ['2d samples', 2 * d],
    ['d/2 samples', d / 2],
  ] as const) {
    const stale = covariance(d, samples, d);
    // One EMA step later: F = γ F_stale + (1 − γ) C_new, as the factor KFAC would invert next.
    const factor = tf.tidy(() =>
      tf.add(tf.mul(stale, tf.scalar(gamma)), tf.mul(covariance(d, samples, d + 7), tf.scalar(1 - gamma))),
    ) as tf.Tensor2D;
    const staleInverse = dampedInverse(stale, damping);
    const dampedFactor = tf.tidy(() => tf.add(factor, tf.mul(tf.eye(d), tf.scalar(damping))));
    const dampedValues = dampedFactor.dataSync() as Float32Array;
    dampedFactor.dispose();

    const matMul = measure(() => {
      const product = tf.matMul(factor, factor);
      forceCompletion(product);
      product.dispose();
    }, repeats);

    const runMethod = (compute: () => { inverse: tf.Tensor2D; iterations: number | undefined }): MethodResult => {
      let iterations: number | undefined;
      let last: Float32Array | undefined;
      try {
        const timing = measure(() => {
          const result = compute();
          forceCompletion(result.inverse);
          iterations = result.iterations;
          last ??= result.inverse.dataSync() as Float32Array;
          result.inverse.dispose();
        }, repeats);
        return { timing, iterations, residual: relativeResidual(dampedValues, last as Float32Array, d) };
      } catch (error) {
        // A method that refuses this factor (Newton–Schulz from a start that is too far off) is a result too.
        if (!(error instanceof RangeError)) throw error;
        return { failure: error.message.split(': ')[1] ?? error.message };
      }
    };
    const methods = {
      schur: runMethod(() => ({ inverse: dampedInverse(factor, damping), iterations: undefined })),
      cold: runMethod(() => newtonSchulzInverse(factor, damping)),
      warm: runMethod(() => newtonSchulzInverse(factor, damping, { initialGuess: staleInverse })),
    };
    rows.push({ d, kind, matMul, methods });
    tf.dispose([stale, factor, staleInverse]);
    console.error(`d = ${d}, ${kind} done`);
  }
}

const methodNames = { schur: "'schur'", cold: "'newton-schulz', default start", warm: "'newton-schulz', warm start" };
const table = markdownTable(
  ['d', 'factor', 'method', 'ms (IQR)', '× one matMul', 'iterations', '‖I − (A+λI)X‖_F / √d'],
  rows.flatMap((row) =>
    (Object.keys(methodNames) as (keyof typeof methodNames)[]).map((method) => {
      const result = row.methods[method];
      if ('failure' in result) {
        return [String(row.d), row.kind, methodNames[method], `fails: ${result.failure}`, '–', '–', '–'];
      }
      return [
        String(row.d),
        row.kind,
        methodNames[method],
        formatTiming(result.timing),
        `${formatNumber(result.timing.medianMs / row.matMul.medianMs)}×`,
        result.iterations === undefined ? '–' : String(result.iterations),
        formatNumber(result.residual, 2),
      ];
    }),
  ),
);
const matMulTable = markdownTable(
  ['d', '`tf.matMul` d × d ms (IQR)', 'GFLOP/s'],
  rows
    .filter((_, i) => i % 2 === 0)
    .map((row) => [String(row.d), formatTiming(row.matMul), formatNumber((2 * row.d ** 3) / (row.matMul.medianMs * 1e6))]),
);

publishReport(
  'damped-inverse',
  options,
  `# damped-inverse: the methods of \`dampedInverse\` side by side${options.smoke ? ' (smoke run: tiny sizes, numbers meaningless)' : ''}

Damping λ = ${damping}. The factor is one EMA step (γ = ${gamma}) past a "stale" factor; the warm
start is the Schur inverse of the stale factor. Times are medians of repeated runs (IQR in
brackets) in milliseconds, measured in this one run; "× one matMul" divides by the time of one
d × d \`tf.matMul\` measured alongside. The residual is computed in float64 from the float32
values.

${table}

${matMulTable}

## Environment

${environmentTable(describeEnvironment(['@mkor/linalg', '@tensorflow/tfjs-backend-wasm']))}
`,
);
