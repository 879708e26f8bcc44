import type { CaptureRegistry, PreparableModel } from '@mkor/capture';
import { type SecondOrderMethodFactory, SecondOrderOptimizer, type SecondOrderOptimizerOptions } from '@mkor/second-order';
import * as tf from '@tensorflow/tfjs-core';

import { mkorBlock } from './block';
import { type MkorBlockOptions, mkorLoopDefaults, resolveMkorBlockOptions, splitMkorOptions } from './options';

/** The authors' per-row clamp of the captured rows (`clipping_value`), used by the reference preset. */
const REFERENCE_ROW_CLAMP = 100;

/** Options of {@link MkorOptimizer}: MKOR's block options, and the adapter's (scaling, backend — default Adam —, `hybrid` for MKOR-H, `maxDim`). */
export interface MkorOptimizerOptions extends MkorBlockOptions, Omit<SecondOrderOptimizerOptions, 'blocks'> {}

const MKOR_METHOD: SecondOrderMethodFactory = (where, methodOptions) => {
  const { block, preset } = splitMkorOptions(methodOptions as MkorBlockOptions, where);
  const resolved = resolveMkorBlockOptions(block, where);
  return {
    statePrefix: 'mkor',
    blocks: mkorBlock(block, where),
    defaultScaling: 'frobenius',
    loopDefaults: mkorLoopDefaults(preset),
    // The authors clamp every input row and every scaled output-gradient row to ±100.
    ...(preset === 'reference' ? { rowClamp: REFERENCE_ROW_CLAMP } : {}),
    config: {
      preset: resolved.preset,
      form: resolved.form,
      gamma: resolved.gamma as number,
      stabilizer: resolved.stabilizer === false ? false : { ...resolved.stabilizer },
      factorUpdateInterval: resolved.factorUpdateInterval as number,
      warmupSteps: resolved.warmupSteps,
      factorPrecision: resolved.factorPrecision,
      factors: resolved.factors,
      rank: resolved.rank,
    },
  };
};

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
    super(target, options, MKOR_METHOD);
  }
}

tf.serialization.registerClass(MkorOptimizer);
