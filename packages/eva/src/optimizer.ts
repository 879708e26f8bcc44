import type { CaptureRegistry, PreparableModel } from '@mkor/capture';
import { SecondOrderOptimizer, type SecondOrderOptimizerOptions } from '@mkor/second-order';
import * as tf from '@tensorflow/tfjs-core';

import type { EvaBlockOptions } from './block';
import { EVA } from './eva';

/** Options of {@link EvaOptimizer}: the Eva block's, and the adapter's (scaling, backend — default Adam —, `hybrid`, `maxDim`). */
export interface EvaOptimizerOptions extends EvaBlockOptions, Omit<SecondOrderOptimizerOptions, 'blocks'> {}

/**
 * Eva as a `tf.Optimizer` (`model.compile({ optimizer })` + `model.fit`, or `optimizer.minimize`):
 *
 * ```ts
 * const optimizer = new EvaOptimizer(model, { learningRate: 1e-3, damping: 0.03 });
 * model.compile({ optimizer, loss: 'categoricalCrossentropy' });
 * await model.fit(x, y);
 * ```
 *
 * `SecondOrderOptimizer` of `@mkor/second-order` with {@link evaBlock} on every second-order layer
 * (rank-1 vectors only). The learning rate (the default Adam's, or the backend's own) is also `lr`
 * of the KL-clip. `metrics`, `totals`, `getConfig` and `fromConfig` are the adapter's.
 */
export class EvaOptimizer extends SecondOrderOptimizer {
  /** The name tfjs serialisation knows this class by. */
  static override get className(): string {
    return 'EvaOptimizer';
  }

  /**
   * @param target - the model to train (prepared here), a capture registry, or `undefined` for an
   *   optimizer that gets its model later with `attach(model)`.
   */
  constructor(target: PreparableModel | CaptureRegistry | undefined, options: EvaOptimizerOptions = {}) {
    super(target, options, EVA.optimizer);
  }
}

tf.serialization.registerClass(EvaOptimizer);
