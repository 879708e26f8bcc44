/**
 * Fixtures of the KFAC and Eva preconditioner tests: two second-order layers shaped as
 * `@mkor/capture`'s `SecondOrderLayer` (a 4→3 dense layer with a bias, and a 2×1 conv2d layer
 * from 3 to 2 channels without one), the rows and samples behind their statistics, seeded
 * gradients of their variables, a driver of the test steps over them, a layer's gradient matrix
 * in float64, and the check of the step timings in the metrics of KFAC and Eva.
 */
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';

import { type Matrix64, matrix } from './float64';
import { seeded } from './seeded';

/** The two fixture layers: `dense` (`[4, 3]` kernel and a bias) and `conv` (`[2, 1, 3, 2]` kernel, inputDim 2·1·3 = 6). */
export const FIXTURE_LAYERS = [
  { name: 'dense', kind: 'dense', gradientCount: 'rows', kernelName: 'dense/kernel', biasName: 'dense/bias', inputDim: 4, outputDim: 3, kernelShape: [4, 3] },
  { name: 'conv', kind: 'conv2d', gradientCount: 'samples', kernelName: 'conv/kernel', inputDim: 6, outputDim: 2, kernelShape: [2, 1, 3, 2] },
] as const;

/** The rows behind each fixture statistic (what `gradientScale: 'sum'` counts for a dense layer). */
export const FIXTURE_ROWS = 8;

/** The samples (batch size) behind each fixture statistic (what `gradientScale: 'sum'` counts for a conv2d layer). */
export const FIXTURE_SAMPLES = 2;

/** Seeded gradients of the fixture layers' variables, plus `other` (`[5]`), a variable of no second-order layer. */
export function fixtureGradients(seed: number): Record<string, tf.Tensor> {
  return {
    'dense/kernel': tf.tensor(seeded(12, seed), [4, 3]),
    'dense/bias': tf.tensor(seeded(3, seed + 1), [3]),
    'conv/kernel': tf.tensor(seeded(12, seed + 2), [2, 1, 3, 2]),
    other: tf.tensor(seeded(5, seed + 3), [5]),
  };
}

/** One of {@link FIXTURE_LAYERS}. */
export type FixtureLayer = (typeof FIXTURE_LAYERS)[number];

/**
 * Drives `steps` steps of a preconditioner test on the fixture layers: step k makes the
 * statistics `statisticsOf(layer, k + 1, 100k + 10i)` of the i-th layer (keyed by layer name) and
 * the gradients {@link fixtureGradients}`(1000 + k)`, and hands them to `body`, which runs the
 * step and checks it, and returns the step's updates. Then the gradient `other` (of no
 * second-order layer) must have passed through as the same tensor; the updates, the gradients
 * and the statistics are freed.
 */
export function forEachFixtureStep<T extends object>(
  steps: number,
  statisticsOf: (layer: FixtureLayer, step: number, seed: number) => T,
  body: (step: number, statistics: Readonly<Record<string, T>>, grads: Readonly<Record<string, tf.Tensor>>) => Readonly<Record<string, tf.Tensor>>,
): void {
  for (let step = 0; step < steps; step++) {
    const statistics = Object.fromEntries(FIXTURE_LAYERS.map((layer, i) => [layer.name, statisticsOf(layer, step + 1, 100 * step + 10 * i)]));
    const grads = fixtureGradients(1000 + step);
    const updates = body(step, statistics, grads);
    expect(updates.other).toBe(grads.other);
    tf.dispose(Object.values(updates).filter((u) => !Object.values(grads).includes(u)));
    tf.dispose(Object.values(grads));
    // Statistics hold tensors (and numbers) at any depth, e.g. covariances: tf.dispose walks them.
    tf.dispose(Object.values(statistics) as unknown as tf.TensorContainer);
  }
}

/** The variables and sizes of a layer that {@link gradientMatrix64} reads. */
export interface GradientMatrixLayer {
  readonly kernelName: string;
  readonly biasName?: string;
  readonly inputDim: number;
  readonly outputDim: number;
}

/** A layer's gradient in float64 in tfjs's kernel layout with the bias folded in: `[∇K; ∇b]`, `[inputDim (+1), outputDim]`. */
export function gradientMatrix64(layer: GradientMatrixLayer, grads: Readonly<Record<string, tf.Tensor>>): Matrix64 {
  const kernel = (grads[layer.kernelName] as tf.Tensor).dataSync();
  const bias = layer.biasName === undefined ? [] : Array.from((grads[layer.biasName] as tf.Tensor).dataSync());
  return matrix(layer.inputDim + (bias.length > 0 ? 1 : 0), layer.outputDim, [...kernel, ...bias]);
}

/** The timings of a step's metrics (`KfacStepMetrics`, `EvaStepMetrics`, `MkorStepMetrics`). */
export interface StepTimings {
  readonly factorMs: number;
  readonly preconditionMs: number;
}

/**
 * Expects a step's metrics to carry `factorMs` and `preconditionMs` as finite numbers ≥ 0. They
 * are wall-clock timings: nothing more about their values is asserted.
 */
export function expectStepTimings(metrics: StepTimings | null | undefined): void {
  expect(metrics).toBeTruthy();
  for (const ms of [metrics!.factorMs, metrics!.preconditionMs]) {
    expect(typeof ms).toBe('number');
    expect(Number.isFinite(ms)).toBe(true);
    expect(ms).toBeGreaterThanOrEqual(0);
  }
}
