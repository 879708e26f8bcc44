import type { CaptureRegistry, PreparableModel } from '@mkor/capture';
import { SecondOrderOptimizer, type SecondOrderOptimizerOptions } from '@mkor/second-order';
import * as tf from '@tensorflow/tfjs-core';

import type { KfacBlockOptions } from './block';
import { KFAC } from './kfac';

/** Options of {@link KfacOptimizer}: the KFAC block's, and the adapter's (scaling, backend — default Adam —, `hybrid`, `maxDim`). */
export interface KfacOptimizerOptions extends KfacBlockOptions, Omit<SecondOrderOptimizerOptions, 'blocks'> {}

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
 * `SecondOrderOptimizer` of `@mkor/second-order` with {@link kfacBlock} on every second-order
 * layer; it prepares the model with covariances. The learning rate (the default Adam's, or the
 * backend's own) is also `lr` of the KL-clip. `metrics`, `totals`, `getConfig` and `fromConfig` are
 * the adapter's.
 */
export class KfacOptimizer extends SecondOrderOptimizer {
  /** The name tfjs serialisation knows this class by. */
  static override get className(): string {
    return 'KfacOptimizer';
  }

  /**
   * @param target - the model to train (prepared here), a capture registry made with
   *   `{ covariance: true }`, or `undefined` for an optimizer that gets its model later with `attach(model)`.
   */
  constructor(target: PreparableModel | CaptureRegistry | undefined, options: KfacOptimizerOptions = {}) {
    super(target, options, KFAC.optimizer);
  }
}

tf.serialization.registerClass(KfacOptimizer);
