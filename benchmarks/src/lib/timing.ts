/**
 * Wall-clock timing with warm-up and robust statistics: the median of the repeats and their
 * interquartile range (IQR), so one slow repeat (a GC pause, a neighbour on the machine) moves
 * neither.
 */
import { performance } from 'node:perf_hooks';

/** Options of {@link measure}. */
export interface MeasureOptions {
  /** Untimed runs first (JIT, wasm memory growth, caches). Default 2. */
  readonly warmup?: number;
  /** Timed runs. Default 7. */
  readonly repeats?: number;
}

/** Timing statistics in milliseconds. */
export interface Timing {
  readonly medianMs: number;
  /** First and third quartiles of the repeats. */
  readonly q1Ms: number;
  readonly q3Ms: number;
  readonly samplesMs: readonly number[];
}

/** The q-quantile (0 ≤ q ≤ 1) of sorted values, linearly interpolated. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) throw new RangeError('quantile: no values');
  const position = (sorted.length - 1) * q;
  const below = Math.floor(position);
  const above = Math.ceil(position);
  const low = sorted[below] as number;
  const high = sorted[above] as number;
  return low + (high - low) * (position - below);
}

/**
 * Runs `run` `warmup` times untimed, then `repeats` times timed, and returns the statistics.
 * `run` must finish its work before returning (read back a value that depends on the result).
 */
export function measure(run: () => void, options: MeasureOptions = {}): Timing {
  const { warmup = 2, repeats = 7 } = options;
  for (let i = 0; i < warmup; i++) run();
  const samplesMs: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const start = performance.now();
    run();
    samplesMs.push(performance.now() - start);
  }
  const sorted = [...samplesMs].sort((a, b) => a - b);
  return { medianMs: quantile(sorted, 0.5), q1Ms: quantile(sorted, 0.25), q3Ms: quantile(sorted, 0.75), samplesMs };
}

/**
 * The least-squares slope of log(time) against log(size): the fitted exponent p of
 * `time ≈ c·sizeᵖ`.
 */
export function fittedExponent(sizes: readonly number[], timesMs: readonly number[]): number {
  if (sizes.length !== timesMs.length || sizes.length < 2) {
    throw new RangeError('fittedExponent: need at least two (size, time) pairs');
  }
  const xs = sizes.map(Math.log);
  const ys = timesMs.map(Math.log);
  const meanX = xs.reduce((s, x) => s + x, 0) / xs.length;
  const meanY = ys.reduce((s, y) => s + y, 0) / ys.length;
  let covariance = 0;
  let variance = 0;
  xs.forEach((x, i) => {
    covariance += (x - meanX) * ((ys[i] as number) - meanY);
    variance += (x - meanX) ** 2;
  });
  return covariance / variance;
}
