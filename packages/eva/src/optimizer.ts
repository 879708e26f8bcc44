import { CaptureOptimizer, type CaptureRegistry, type PreparableModel } from '@mkor/capture';
import type { Transform } from '@mkor/core';
import { adam } from '@mkor/first-order';
import * as tf from '@tensorflow/tfjs-core';

import { type EvaState, type EvaTransform, eva } from './eva';
import { type EvaOptions, type EvaStepMetrics, resolveEvaOptions } from './preconditioner';

/** Options of {@link EvaOptimizer}. */
export interface EvaOptimizerOptions extends EvaOptions {
  /** The first-order backend as a transform from `@mkor/first-order`. Default `adam({ learningRate })`. */
  readonly backend?: Transform<unknown>;
  /**
   * The learning rate: of the default Adam backend, and `lr` in the KL-clip. Default 1e-3. With
   * your own `backend`, set it to that backend's learning rate.
   */
  readonly learningRate?: number;
  /** Widest layer (inputs or outputs) preconditioned when a model is prepared. Default 4096. */
  readonly maxDim?: number;
}

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
 * `getWeights`/`setWeights`.
 */
export class EvaOptimizer extends CaptureOptimizer<EvaState> {
  /** The name tfjs serialisation knows this class by. */
  static override get className(): string {
    return 'EvaOptimizer';
  }

  private readonly options: EvaOptimizerOptions;
  private readonly evaTransform: EvaTransform;

  constructor(target: PreparableModel | CaptureRegistry, options: EvaOptimizerOptions = {}) {
    const { backend, learningRate, maxDim, ...evaOptions } = options;
    if (learningRate !== undefined && !(typeof learningRate === 'number' && Number.isFinite(learningRate) && learningRate > 0)) {
      throw new RangeError(`EvaOptimizer: learningRate must be a positive finite number, got ${String(learningRate)}`);
    }
    const preconditionerOptions: EvaOptions = { learningRate: learningRate ?? 1e-3, ...evaOptions };
    resolveEvaOptions(preconditionerOptions, 'EvaOptimizer');
    super(
      target,
      maxDim === undefined ? {} : { maxDim },
      (capture) =>
        eva({
          ...preconditionerOptions,
          layers: () => capture.secondOrder,
          backend: backend ?? adam({ learningRate: learningRate ?? 1e-3 }),
        }),
      { statePrefix: 'eva', checkpointExclude: (path) => path.endsWith('/metrics') },
    );
    this.options = options;
    this.evaTransform = this.transform as EvaTransform;
  }

  /** The latest step's metrics (scale factors), or null. */
  get metrics(): EvaStepMetrics | null {
    const state = this.currentState;
    return state === undefined ? null : this.evaTransform.metrics(state);
  }

  /** Steps skipped because their gradients held NaN or Inf. */
  get skippedSteps(): number {
    return this.currentState?.skippedSteps ?? 0;
  }

  /** The resolved Eva hyperparameters (the backend transform and the model are not serialisable). */
  override getConfig(): tf.serialization.ConfigDict {
    const { backend, learningRate, maxDim, ...evaOptions } = this.options;
    const resolved = resolveEvaOptions({ learningRate: learningRate ?? 1e-3, ...evaOptions }, 'EvaOptimizer');
    return {
      gamma: resolved.gamma,
      damping: resolved.damping,
      gradientScale: resolved.gradientScale,
      scaling: resolved.scaling,
      klClip: resolved.klClip,
      learningRate: typeof resolved.learningRate === 'number' ? resolved.learningRate : 'schedule',
      backend: backend === undefined ? 'adam' : 'custom',
      maxDim: maxDim ?? null,
    };
  }
}

tf.serialization.registerClass(EvaOptimizer);
