import * as tf from '@tensorflow/tfjs-core';

import type { StatisticsFunctions } from './layer-kind';
import type { LayerStatistics } from './types';

/** The input statistic of a forward pass whose backward pass has not run yet. */
interface PendingInput {
  /** Identifies the forward pass, so that its backward pass commits its own input statistic. */
  readonly token: number;
  readonly a: tf.Tensor1D;
  readonly rows: number;
  readonly samples: number;
  /** `(1/n) XᵀX`, when covariances are captured. */
  readonly inputCovariance?: tf.Tensor2D;
}

/** Every tensor a pending input holds. */
function pendingTensors(entry: PendingInput): tf.Tensor[] {
  return entry.inputCovariance === undefined ? [entry.a] : [entry.a, entry.inputCovariance];
}

/** Every tensor a committed pair holds. */
function committedTensors(entry: LayerStatistics): tf.Tensor[] {
  return entry.covariance === undefined ? [entry.a, entry.g] : [entry.a, entry.g, entry.covariance.a, entry.covariance.g];
}

/**
 * Pairs the statistics of forward and backward passes, per layer. A forward pass records a
 * pending input vector `a` (and, when covariances are captured, `(1/n) XᵀX`), replacing and
 * disposing an uncommitted one; the backward pass of that same forward pass commits
 * `(a, g, rows)` (and the covariances), replacing and disposing the previous pair. Only `d`-sized
 * vectors (and `d × d` covariances) are ever held, each `tf.keep`-ed.
 */
export class StatisticsStore {
  private readonly pending = new Map<string, PendingInput>();
  private readonly committed = new Map<string, LayerStatistics>();
  private nextToken = 1;

  /**
   * Takes ownership of the kept vector `a` (and the kept covariance, when given); returns the
   * token of this forward pass.
   */
  recordInput(layerName: string, a: tf.Tensor1D, rows: number, samples: number, inputCovariance?: tf.Tensor2D): number {
    const token = this.nextToken++;
    const previous = this.pending.get(layerName);
    if (previous !== undefined) tf.dispose(pendingTensors(previous));
    this.pending.set(layerName, { token, a, rows, samples, ...(inputCovariance === undefined ? {} : { inputCovariance }) });
    return token;
  }

  /** Whether the forward pass `token` is still the one awaiting its backward pass. */
  isPending(layerName: string, token: number): boolean {
    return this.pending.get(layerName)?.token === token;
  }

  /**
   * Commits the pending input of forward pass `token` with the kept output-gradient vector `g`
   * and, when covariances are captured, the kept `(1/n) Σ dy dyᵀ` (taking ownership of both),
   * disposing the pair it replaces. A stale token only disposes what it was given.
   */
  commit(layerName: string, token: number, g: tf.Tensor1D, outputGradientCovariance?: tf.Tensor2D): void {
    const input = this.pending.get(layerName);
    if (input === undefined || input.token !== token) {
      tf.dispose(outputGradientCovariance === undefined ? [g] : [g, outputGradientCovariance]);
      return;
    }
    this.pending.delete(layerName);
    const previous = this.committed.get(layerName);
    this.committed.set(layerName, {
      a: input.a,
      g,
      rows: input.rows,
      samples: input.samples,
      step: (previous?.step ?? 0) + 1,
      ...(input.inputCovariance === undefined || outputGradientCovariance === undefined
        ? {}
        : { covariance: { a: input.inputCovariance, g: outputGradientCovariance } }),
    });
    if (input.inputCovariance !== undefined && outputGradientCovariance === undefined) input.inputCovariance.dispose();
    if (input.inputCovariance === undefined && outputGradientCovariance !== undefined) outputGradientCovariance.dispose();
    if (previous !== undefined) tf.dispose(committedTensors(previous));
  }

  latest(layerName: string): LayerStatistics | undefined {
    return this.committed.get(layerName);
  }

  /** Disposes every pending and committed vector. */
  clear(): void {
    for (const entry of this.pending.values()) tf.dispose(pendingTensors(entry));
    for (const entry of this.committed.values()) tf.dispose(committedTensors(entry));
    this.pending.clear();
    this.committed.clear();
  }
}

/**
 * The statistics functions one layer records with: the rank-1 vectors always, the covariances
 * only when the capture records them.
 */
export type StatisticsVectors = Pick<StatisticsFunctions, 'input' | 'outputGradient'> &
  Partial<Pick<StatisticsFunctions, 'inputCovariance' | 'outputGradientCovariance'>>;

/** The functions of a layer's kind that a capture records with: all four with `covariance`, else the rank-1 pair. */
export function vectorsToRecord(functions: StatisticsFunctions, covariance: boolean): StatisticsVectors {
  const rank1 = { input: (x: tf.Tensor) => functions.input(x), outputGradient: (dy: tf.Tensor) => functions.outputGradient(dy) };
  if (!covariance) return rank1;
  return {
    ...rank1,
    inputCovariance: (x) => functions.inputCovariance(x),
    outputGradientCovariance: (dy) => functions.outputGradientCovariance(dy),
  };
}

/**
 * `f(x)` computed off the gradient tape: inside a custom-gradient op, whose forward function
 * runs with recording paused. The op itself is recorded but never reaches the loss, so the
 * backward pass prunes it; no tensor of the computation is saved for backprop.
 */
function offTape<T extends tf.Tensor>(f: (x: tf.Tensor) => T, x: tf.Tensor): T {
  const op = tf.customGrad((...args) => {
    const input = args[0] as tf.Tensor;
    return { value: f(input), gradFunc: () => tf.zerosLike(input) };
  });
  return op(x) as T;
}

/**
 * The capture point of one layer, for a forward pass recorded on a gradient tape: records the
 * pending input vector `a` of `input` now, and returns `y` through an identity whose custom
 * gradient passes `dy = ∂Loss/∂y` through unchanged while committing `(a, g, rows)` with
 * `g = vectors.outputGradient(dy)`. `y` is the layer's pre-activation output; `rows` is
 * `y.size / y.shape[last]` and `samples` its leading dimension.
 */
export function captureThrough(
  store: StatisticsStore,
  layerName: string,
  input: tf.Tensor,
  y: tf.Tensor,
  vectors: StatisticsVectors,
): tf.Tensor {
  const outputDim = y.shape[y.rank - 1] as number;
  const a = tf.tidy('CaptureInputStatistic', () => tf.keep(offTape(vectors.input, input)));
  const inputCovarianceOf = vectors.inputCovariance;
  const inputCovariance =
    inputCovarianceOf === undefined ? undefined : tf.tidy('CaptureInputCovariance', () => tf.keep(offTape(inputCovarianceOf, input)));
  const token = store.recordInput(layerName, a, y.size / outputDim, y.shape[0] as number, inputCovariance);
  const identity = tf.customGrad((...args) => {
    const output = args[0] as tf.Tensor;
    return {
      value: tf.clone(output),
      gradFunc: (dy: tf.Tensor) => {
        if (store.isPending(layerName, token)) {
          const outputCovariance = vectors.outputGradientCovariance?.(dy);
          store.commit(layerName, token, tf.keep(vectors.outputGradient(dy)), outputCovariance === undefined ? undefined : tf.keep(outputCovariance));
        }
        return dy;
      },
    };
  });
  // A named scope, so that the tape names this op after no registered kernel (whose gradient
  // the engine would use instead of ours).
  return tf.tidy('CaptureOutputGradient', () => identity(y));
}
