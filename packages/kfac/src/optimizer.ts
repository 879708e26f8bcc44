import type { CaptureRegistry, PreparableModel } from '@mkor/capture';
import * as tf from '@tensorflow/tfjs-core';

import { kfac } from './kfac';
import { type KfacOptions, type KfacPreconditionerState, type ResolvedKfacOptions, resolveKfacOptions } from './preconditioner';
import { type SecondOrderMethod, SecondOrderOptimizer, type SecondOrderOptimizerOptions } from './second-order-optimizer';

/** Options of {@link KfacOptimizer}: KFAC's, the backend (default Adam) and `maxDim` (default 4096). */
export interface KfacOptimizerOptions extends SecondOrderOptimizerOptions<KfacOptions> {
  /**
   * The learning rate of the default Adam backend, also `lr` in the KL-clip. Default 1e-3. A
   * backend from `@mkor/first-order` carries its own (the KL-clip uses it; giving this too is
   * refused); with a backend transform of your own, give that backend's rate here for the KL-clip.
   */
  readonly learningRate?: number;
}

const KFAC_METHOD: SecondOrderMethod<KfacOptions, ResolvedKfacOptions, KfacPreconditionerState> = {
  statePrefix: 'kfac',
  covariance: true,
  resolve: resolveKfacOptions,
  compose: kfac,
  config: ({ gamma, damping, factorUpdateInterval, inverseInterval, gradientScale, scaling, klClip }) => ({
    gamma,
    damping,
    factorUpdateInterval,
    inverseInterval,
    gradientScale,
    scaling,
    klClip,
  }),
};

/**
 * KFAC as a `tf.Optimizer` (`model.compile({ optimizer })` + `model.fit`, or
 * `optimizer.minimize(loss)`):
 *
 * ```ts
 * const optimizer = new KfacOptimizer(model, { learningRate: 1e-3, damping: 1e-3, inverseInterval: 10 });
 * model.compile({ optimizer, loss: 'categoricalCrossentropy' });
 * await model.fit(x, y);
 * ```
 *
 * Given a model, it prepares it with `prepareModel(model, { covariance: true, maxDim })` and
 * undoes that on `dispose`; given a registry, it must have been made with `{ covariance: true }`.
 * The state (factors, inverses, backend moments) saves and restores through
 * `getWeights`/`setWeights`. `metrics` holds the latest step's (failed inversions, scale factors,
 * timings); `getConfig` reports the resolved hyperparameters, the learning rate,
 * `backend: 'adam' | 'custom'` and `maxDim` (see {@link SecondOrderOptimizer}).
 */
export class KfacOptimizer extends SecondOrderOptimizer<KfacOptions, ResolvedKfacOptions, KfacPreconditionerState> {
  /** The name tfjs serialisation knows this class by. */
  static override get className(): string {
    return 'KfacOptimizer';
  }

  /**
   * @param target - the model to train (prepared here), a capture registry, or `undefined` for an
   *   optimizer that gets its model later with `attach(model)` (see `CaptureOptimizer`).
   */
  constructor(target: PreparableModel | CaptureRegistry | undefined, options: KfacOptimizerOptions = {}) {
    super(target, options, KFAC_METHOD);
  }

  /** Totals since the start: factor and inverse updates, failed inversions, rejected factors, refused steps. */
  get totals(): KfacPreconditionerState['totals'] & { skippedSteps: number; refusedResults: number } {
    const totals = this.preconditionerState?.totals ?? { factorUpdates: 0, inverseUpdates: 0, failedInversions: 0, rejectedFactors: 0 };
    return { ...totals, skippedSteps: this.skippedSteps, refusedResults: this.refusedResults };
  }
}

tf.serialization.registerClass(KfacOptimizer);
