import { CaptureOptimizer, type CaptureRegistry, type PreparableModel } from '@mkor/capture';
import type { Transform } from '@mkor/core';
import { adam } from '@mkor/first-order';
import * as tf from '@tensorflow/tfjs-core';

import { type KfacState, type KfacTransform, kfac } from './kfac';
import { type KfacOptions, type KfacPreconditionerState, type KfacStepMetrics, resolveKfacOptions } from './preconditioner';

/** Options of {@link KfacOptimizer}. */
export interface KfacOptimizerOptions extends KfacOptions {
  /** The first-order backend as a transform from `@mkor/first-order`. Default `adam({ learningRate })`. */
  readonly backend?: Transform<unknown>;
  /**
   * The learning rate: of the default Adam backend, and `lr` in the KL-clip unless
   * `learningRate` there is meant otherwise. Default 1e-3. With your own `backend`, set it to
   * that backend's learning rate.
   */
  readonly learningRate?: number;
  /** Widest layer (inputs or outputs) preconditioned when a model is prepared. Default 4096. */
  readonly maxDim?: number;
}

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
 * `getWeights`/`setWeights`.
 */
export class KfacOptimizer extends CaptureOptimizer<KfacState> {
  /** The name tfjs serialisation knows this class by. */
  static override get className(): string {
    return 'KfacOptimizer';
  }

  private readonly options: KfacOptimizerOptions;
  private readonly kfacTransform: KfacTransform;

  constructor(target: PreparableModel | CaptureRegistry, options: KfacOptimizerOptions = {}) {
    const { backend, learningRate, maxDim, ...kfacOptions } = options;
    if (learningRate !== undefined && !(typeof learningRate === 'number' && Number.isFinite(learningRate) && learningRate > 0)) {
      throw new RangeError(`KfacOptimizer: learningRate must be a positive finite number, got ${String(learningRate)}`);
    }
    const preconditionerOptions: KfacOptions = { learningRate: learningRate ?? 1e-3, ...kfacOptions };
    resolveKfacOptions(preconditionerOptions, 'KfacOptimizer');
    super(
      target,
      { covariance: true, ...(maxDim === undefined ? {} : { maxDim }) },
      (capture) =>
        kfac({
          ...preconditionerOptions,
          layers: () => capture.secondOrder,
          backend: backend ?? adam({ learningRate: learningRate ?? 1e-3 }),
        }),
      { statePrefix: 'kfac', checkpointExclude: (path) => path.endsWith('/metrics') },
    );
    this.options = options;
    this.kfacTransform = this.transform as KfacTransform;
  }

  /** The latest step's metrics (failed inversions, scale factors), or null. */
  get metrics(): KfacStepMetrics | null {
    const state = this.currentState;
    return state === undefined ? null : this.kfacTransform.metrics(state);
  }

  /** Totals since the start: factor and inverse updates, failed inversions, rejected factors, skipped steps. */
  get totals(): KfacPreconditionerState['totals'] & { skippedSteps: number } {
    const state = this.currentState;
    const totals = state === undefined ? { factorUpdates: 0, inverseUpdates: 0, failedInversions: 0, rejectedFactors: 0 } : this.kfacTransform.preconditionerState(state).totals;
    return { ...totals, skippedSteps: state?.skippedSteps ?? 0 };
  }

  /** The resolved KFAC hyperparameters (the backend transform and the model are not serialisable). */
  override getConfig(): tf.serialization.ConfigDict {
    const { backend, learningRate, maxDim, ...kfacOptions } = this.options;
    const resolved = resolveKfacOptions({ learningRate: learningRate ?? 1e-3, ...kfacOptions }, 'KfacOptimizer');
    return {
      gamma: resolved.gamma,
      damping: resolved.damping,
      factorUpdateInterval: resolved.factorUpdateInterval,
      inverseInterval: resolved.inverseInterval,
      gradientScale: resolved.gradientScale,
      scaling: resolved.scaling,
      klClip: resolved.klClip,
      learningRate: typeof resolved.learningRate === 'number' ? resolved.learningRate : 'schedule',
      backend: backend === undefined ? 'adam' : 'custom',
      maxDim: maxDim ?? null,
    };
  }
}

tf.serialization.registerClass(KfacOptimizer);
