import type { CaptureRegistry, PreparableModel } from '@mkor/capture';
import { SecondOrderOptimizer, type SecondOrderOptimizerOptions } from '@mkor/second-order';
import * as tf from '@tensorflow/tfjs-core';

import { MKOR } from './mkor';
import type { MkorBlockOptions } from './options';

/** Options of {@link MkorOptimizer}: MKOR's block options, and the adapter's (scaling, backend — default Adam —, `hybrid` for MKOR-H, `maxDim`). */
export interface MkorOptimizerOptions extends MkorBlockOptions, Omit<SecondOrderOptimizerOptions, 'blocks'> {}

/**
 * MKOR as a `tf.Optimizer`, so `model.compile({ optimizer })` + `model.fit`, and
 * `optimizer.minimize(loss)` in a custom loop, both work:
 *
 * ```ts
 * const optimizer = new MkorOptimizer(model, { learningRate: 1e-3 });
 * model.compile({ optimizer, loss: 'categoricalCrossentropy' });
 * await model.fit(x, y);
 * ```
 *
 * `SecondOrderOptimizer` of `@mkor/second-order` with {@link mkorBlock} on every second-order
 * layer: given a model, it prepares it with `@mkor/capture` (Dense and Conv2D layers become
 * second-order, the rest first-order: see `optimizer.capture.describe()`); given a
 * `CaptureRegistry`, it uses that. Its state saves and restores through
 * `getWeights`/`setWeights`, and a resumed run continues exactly. `hybrid` makes it MKOR-H.
 * `metrics`, `totals`, `switchedAtStep`, `getConfig` and `fromConfig` are the adapter's.
 */
export class MkorOptimizer extends SecondOrderOptimizer {
  /** The name tfjs serialisation knows this class by. */
  static override get className(): string {
    return 'MkorOptimizer';
  }

  /**
   * @param target - the model to train (prepared here), a capture registry, or `undefined` for an
   *   optimizer that gets its model later with `attach(model)`.
   */
  constructor(target: PreparableModel | CaptureRegistry | undefined, options: MkorOptimizerOptions = {}) {
    super(target, options, MKOR.optimizer);
  }
}

tf.serialization.registerClass(MkorOptimizer);
