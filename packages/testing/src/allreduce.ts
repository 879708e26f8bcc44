/**
 * Float64 references for all-reduce (used by @mkor/allreduce): the exact reduction of per-rank
 * contributions, and the error bound a float32 (or float16-on-the-wire) implementation must meet.
 */
import { FLOAT16_FORMAT64, roundToFormat64 } from './fp16';

/** float32 unit roundoff 2⁻²⁴. */
const FLOAT32_UNIT_ROUNDOFF64 = 2 ** -24;
/** float16 unit roundoff 2⁻¹¹. */
const FLOAT16_UNIT_ROUNDOFF64 = 2 ** -11;

/**
 * The reduction of `contributions` (one array per rank, equal lengths) in float64: `Σ_r x_r`, or
 * `(Σ_r x_r) / n` for `'mean'`. With `precision: 'float16'` each value is first rounded to the
 * nearest float16 (ties to even), as it would travel. Float64 summation adds a relative error
 * near 1e-16, negligible against the float32 bounds it is compared with.
 */
export function allReduce64(
  contributions: readonly ArrayLike<number>[],
  op: 'sum' | 'mean',
  precision: 'float32' | 'float16' = 'float32',
): Float64Array {
  const length = contributions[0]?.length ?? 0;
  const result = new Float64Array(length);
  for (const contribution of contributions) {
    for (let i = 0; i < length; i++) {
      const x = contribution[i] as number;
      result[i] = (result[i] as number) + (precision === 'float16' ? roundToFormat64(x, FLOAT16_FORMAT64) : x);
    }
  }
  if (op === 'mean') for (let i = 0; i < length; i++) result[i] = (result[i] as number) / contributions.length;
  return result;
}

/**
 * A bound on `|computed − exact|` per element for an all-reduce that rounds each contribution to
 * float16 (when asked: error ≤ 2⁻¹¹·|x_r| for normal values, ≤ 2⁻²⁵ among subnormals), sums the n contributions in float32 in any order
 * (error ≤ γ_{n−1}·Σ|x̂_r| with γ_k = k·u/(1 − k·u), u = 2⁻²⁴) and, for `'mean'`, divides by n
 * with one more rounding (≤ u·|result|). `exact` is the float64 reduction of the unrounded values.
 */
export function allReduceErrorBound64(
  contributions: readonly ArrayLike<number>[],
  op: 'sum' | 'mean',
  precision: 'float32' | 'float16' = 'float32',
): Float64Array {
  const n = contributions.length;
  const length = contributions[0]?.length ?? 0;
  const k = Math.max(n - 1, 0) * FLOAT32_UNIT_ROUNDOFF64;
  const summation = k / (1 - k);
  const rounding = precision === 'float16' ? FLOAT16_UNIT_ROUNDOFF64 : 0;
  // the summation runs on the rounded values: Σ|x̂_r| ≤ (1 + rounding)·Σ|x_r| + n·2⁻²⁵
  const magnitude = allReduce64(
    contributions.map((c) => Array.from(c, Math.abs)),
    'sum',
  );
  const bound = new Float64Array(length);
  for (let i = 0; i < length; i++) {
    const sumOfMagnitudes = magnitude[i] as number;
    const roundingError = precision === 'float16' ? rounding * sumOfMagnitudes + n * 2 ** -25 : 0;
    let b = roundingError + summation * ((1 + rounding) * sumOfMagnitudes + (precision === 'float16' ? n * 2 ** -25 : 0));
    if (op === 'mean') b = b / n + FLOAT32_UNIT_ROUNDOFF64 * (sumOfMagnitudes / n + b / n);
    bound[i] = b;
  }
  return bound;
}
