import type { CaptureRegistry, PreparableModel } from '@mkor/capture';
import { type SecondOrderMethod, SecondOrderOptimizer, type SecondOrderOptimizerOptions } from '@mkor/kfac';
import * as tf from '@tensorflow/tfjs-core';

import { eva } from './eva';
import { type EvaOptions, type EvaPreconditionerState, type ResolvedEvaOptions, resolveEvaOptions } from './preconditioner';

/** Options of {@link EvaOptimizer}: Eva's, the backend (default Adam) and `maxDim` (default 4096). */
export interface EvaOptimizerOptions extends SecondOrderOptimizerOptions<EvaOptions> {
  /**
   * The learning rate: of the default Adam backend, and `lr` in the KL-clip. Default 1e-3. With
   * your own `backend`, set it to that backend's learning rate.
   */
  readonly learningRate?: number;
}

const EVA_METHOD: SecondOrderMethod<EvaOptions, ResolvedEvaOptions, EvaPreconditionerState> = {
  statePrefix: 'eva',
  resolve: resolveEvaOptions,
  compose: eva,
  config: ({ gamma, damping, gradientScale, scaling, klClip }) => ({ gamma, damping, gradientScale, scaling, klClip }),
};

/**
 * Eva as a `tf.Optimizer` (`model.compile({ optimizer })` + `model.fit`, or `optimizer.minimize`):
 *
 * ```ts
 * const optimizer = new EvaOptimizer(model, { learningRate: 1e-3, damping: 0.03 });
 * model.compile({ optimizer, loss: 'categoricalCrossentropy' });
 * await model.fit(x, y);
 * ```
 *
 * Given a model, it prepares it with `prepareModel(model, { maxDim })` (rank-1 vectors only) and
 * undoes that on `dispose`; given a registry, it uses it. The state saves and restores through
 * `getWeights`/`setWeights`. `metrics` holds the latest step's (scale factors, timings),
 * `skippedSteps` counts the steps skipped for NaN or Inf gradients; `getConfig` reports the
 * resolved hyperparameters, the learning rate, `backend: 'adam' | 'custom'` and `maxDim` (see
 * `SecondOrderOptimizer` of `@mkor/kfac`).
 */
export class EvaOptimizer extends SecondOrderOptimizer<EvaOptions, ResolvedEvaOptions, EvaPreconditionerState> {
  /** The name tfjs serialisation knows this class by. */
  static override get className(): string {
    return 'EvaOptimizer';
  }

  /**
   * @param target - the model to train (prepared here), a capture registry, or `undefined` for an
   *   optimizer that gets its model later with `attach(model)` (see `CaptureOptimizer`).
   */
  constructor(target: PreparableModel | CaptureRegistry | undefined, options: EvaOptimizerOptions = {}) {
    super(target, options, EVA_METHOD);
  }

  /** Totals since the start: refused steps (`skippedSteps`), and among them `refusedResults`. */
  get totals(): { skippedSteps: number; refusedResults: number } {
    return { skippedSteps: this.skippedSteps, refusedResults: this.refusedResults };
  }
}

tf.serialization.registerClass(EvaOptimizer);
