/** The training loop the suites share: per-step losses and wall time, target detection, evaluation. */
import { performance } from 'node:perf_hooks';

import type * as tf from '@tensorflow/tfjs-core';

import type { FactoryOptions, OptimizerFactory } from './optimizers';
import type { Task } from './tasks';

/** Steps averaged for the smoothed training loss that is compared with the target. */
export const SMOOTHING_WINDOW = 10;

/** One training run. */
export interface TrainingRun {
  readonly optimizer: string;
  readonly learningRate: number;
  readonly seed: number;
  /** Training loss of every step (NaN from a diverged step on). */
  readonly losses: number[];
  /** Wall milliseconds of training (forward, backward, optimizer step, loss read-back) up to each step's end. */
  readonly elapsedMs: number[];
  /** First step (1-based count) whose mean loss over the last {@link SMOOTHING_WINDOW} steps is ≤ the target, or null. */
  readonly stepsToTarget: number | null;
  readonly msToTarget: number | null;
  readonly diverged: boolean;
  /** Why the run stopped early when the optimizer threw (counted as diverged). */
  readonly failure?: string;
  readonly test: { loss: number; metric: number };
  /** MKOR-H: the step it switched to first order (−1: never); undefined for others. */
  readonly switchedAtStep?: number;
}

/** Mean of the last `window` values ending at index `end` (inclusive). */
export function trailingMean(values: readonly number[], end: number, window = SMOOTHING_WINDOW): number {
  const start = Math.max(0, end - window + 1);
  let sum = 0;
  for (let i = start; i <= end; i++) sum += values[i] as number;
  return sum / (end - start + 1);
}

/** Trains a fresh instance of `task` (seeded) with a fresh optimizer for `steps` steps. */
export function trainRun(
  task: Task,
  factory: OptimizerFactory,
  learningRate: number,
  seed: number,
  steps: number,
  factoryOptions: FactoryOptions = {},
  onStep?: () => void,
): TrainingRun {
  const instance = task.create(seed, { covariance: factory.needsCovariance });
  const optimizer = factory.create(instance.target, learningRate, factoryOptions);
  const losses: number[] = [];
  const elapsedMs: number[] = [];
  let stepsToTarget: number | null = null;
  let msToTarget: number | null = null;
  let diverged = false;
  let elapsed = 0;
  let failure: string | undefined;
  try {
    for (let step = 0; step < steps && failure === undefined; step++) {
      const start = performance.now();
      let loss: number;
      try {
        const value = optimizer.minimize(() => instance.loss(step), true, instance.variables) as tf.Scalar;
        loss = value.dataSync()[0] as number;
        value.dispose();
      } catch (error) {
        failure = (error as Error).message.split('\n')[0] ?? 'unknown error';
        loss = Number.NaN;
      }
      elapsed += performance.now() - start;
      losses.push(loss);
      elapsedMs.push(elapsed);
      onStep?.();
      if (!Number.isFinite(loss)) {
        diverged = true;
        for (let rest = step + 1; rest < steps; rest++) {
          losses.push(Number.NaN);
          elapsedMs.push(Number.NaN);
          onStep?.();
        }
        break;
      }
      if (stepsToTarget === null && step + 1 >= SMOOTHING_WINDOW && trailingMean(losses, step) <= task.targetLoss) {
        stepsToTarget = step + 1;
        msToTarget = elapsed;
      }
    }
    const test = diverged ? { loss: Number.NaN, metric: Number.NaN } : instance.evaluate();
    const switched = (optimizer as { switchedAtStep?: unknown }).switchedAtStep;
    return {
      optimizer: factory.name,
      learningRate,
      seed,
      losses,
      elapsedMs,
      stepsToTarget,
      msToTarget,
      diverged,
      test,
      ...(failure === undefined ? {} : { failure }),
      ...(factory.name === 'MKOR-H' && typeof switched === 'number' ? { switchedAtStep: switched } : {}),
    };
  } finally {
    optimizer.dispose();
    instance.dispose();
  }
}

/** The mean training loss over the last fifth of a run (the sweep's criterion); ∞ when it diverged. */
export function finalLoss(run: TrainingRun): number {
  if (run.diverged) return Number.POSITIVE_INFINITY;
  const tail = Math.max(1, Math.floor(run.losses.length / 5));
  return trailingMean(run.losses, run.losses.length - 1, tail);
}
