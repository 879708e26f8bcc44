/** Summary statistics of repeated measurements (seeds, layers, steps). */
import { quantile } from './timing';

/** Mean, sample standard deviation, extremes and quartiles of a list of numbers. */
export interface Summary {
  readonly count: number;
  readonly mean: number;
  /** Sample standard deviation (n − 1); 0 for a single value. */
  readonly std: number;
  readonly min: number;
  readonly q1: number;
  readonly median: number;
  readonly q3: number;
  readonly max: number;
}

/** Summarises the finite values of `values` (all fields NaN when there are none). */
export function summarize(values: readonly number[]): Summary {
  const finite = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (finite.length === 0) {
    return { count: 0, mean: Number.NaN, std: Number.NaN, min: Number.NaN, q1: Number.NaN, median: Number.NaN, q3: Number.NaN, max: Number.NaN };
  }
  const mean = finite.reduce((s, v) => s + v, 0) / finite.length;
  const variance = finite.length > 1 ? finite.reduce((s, v) => s + (v - mean) ** 2, 0) / (finite.length - 1) : 0;
  return {
    count: finite.length,
    mean,
    std: Math.sqrt(variance),
    min: finite[0] as number,
    q1: quantile(finite, 0.25),
    median: quantile(finite, 0.5),
    q3: quantile(finite, 0.75),
    max: finite.at(-1) as number,
  };
}
