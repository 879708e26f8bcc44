/**
 * Benchmark `fp16-throughput`: float16 and bfloat16 encoding and decoding of `@mkor/fp16` on a
 * 16 Mi-element array, in elements/s and GB/s, against a plain `Float32Array.set` copy of the
 * same number of elements measured in the same run.
 *
 * Run: `npm run bench:fp16-throughput` in `benchmarks/` (build the packages first).
 */
import { decodeBfloat16, decodeFloat16, encodeBfloat16, encodeFloat16 } from '@mkor/fp16';

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
} from './lib';

const options = parseOptions();
const elements = options.smoke ? 2 ** 20 : 2 ** 24;
const repeats = options.smoke ? { warmup: 1, repeats: 3 } : { warmup: 2, repeats: 9 };

// Typical optimizer data: random sign, magnitudes log-uniform over 1e-6 … 1e4 (float16's normal
// range is 6.1e-5 … 65504, so some values are subnormal in float16 and a few overflow to ±Inf).
let state = 12345;
const random = (): number => {
  state = (state * 1103515245 + 12345) % 2147483648;
  return state / 2147483648;
};
const values = Float32Array.from({ length: elements }, () => (random() < 0.5 ? -1 : 1) * 10 ** (-6 + 10 * random()));
const halves = new Uint16Array(elements);
const decoded = new Float32Array(elements);
const copy = new Float32Array(elements);

interface Row {
  readonly name: string;
  /** Bytes read plus bytes written per element. */
  readonly bytesPerElement: number;
  readonly timing: Timing;
}

const rows: Row[] = [
  { name: '`Float32Array.set` copy (baseline)', bytesPerElement: 8, timing: measure(() => copy.set(values), repeats) },
  { name: '`encodeFloat16` (float32 → float16)', bytesPerElement: 6, timing: measure(() => encodeFloat16(values, halves), repeats) },
  { name: '`decodeFloat16` (float16 → float32)', bytesPerElement: 6, timing: measure(() => decodeFloat16(halves, decoded), repeats) },
  { name: '`encodeBfloat16` (float32 → bfloat16)', bytesPerElement: 6, timing: measure(() => encodeBfloat16(values, halves), repeats) },
  { name: '`decodeBfloat16` (bfloat16 → float32)', bytesPerElement: 6, timing: measure(() => decodeBfloat16(halves, decoded), repeats) },
];
const baseline = rows[0] as Row;

const table = markdownTable(
  ['operation', 'ms (IQR)', 'elements/s', 'GB/s (read + written)', 'time / copy'],
  rows.map((row) => [
    row.name,
    formatTiming(row.timing),
    formatNumber(elements / (row.timing.medianMs / 1e3)),
    formatNumber((elements * row.bytesPerElement) / (row.timing.medianMs * 1e6)),
    `${formatNumber(row.timing.medianMs / baseline.timing.medianMs)}×`,
  ]),
);

publishReport(
  'fp16-throughput',
  options,
  `# fp16-throughput: float16 / bfloat16 conversion against a plain copy${options.smoke ? ' (smoke run: tiny sizes, numbers meaningless)' : ''}

${formatNumber(elements / 2 ** 20)} Mi elements (random sign, magnitudes log-uniform in 1e-6 … 1e4),
outputs preallocated (\`out\` argument) so allocation is not timed. Times are medians of
${repeats.repeats} repeats after ${repeats.warmup} warm-up run(s) (IQR in brackets), in
milliseconds, all measured in this one run. Bytes count what each operation must read and write:
8 per element for the float32 copy, 6 for a conversion (4 + 2).

${table}

## Environment

${environmentTable(describeEnvironment(['@mkor/fp16']))}
`,
);
