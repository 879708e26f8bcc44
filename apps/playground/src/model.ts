/** The models the playground trains on Fashion-MNIST, with seeded initial weights. */
import * as tf from '@tensorflow/tfjs';

/** The models the page offers. */
export const MODEL_NAMES = ['MLP', 'CNN'] as const;
/** One of {@link MODEL_NAMES}. */
export type ModelName = (typeof MODEL_NAMES)[number];

/** What {@link buildModel} builds and how it reads the images. */
export interface ModelChoice {
  readonly model: ModelName;
  /** Width of the MLP's two hidden layers (not used by the CNN). */
  readonly hidden: number;
  /** Seed of the initial weights. */
  readonly seed: number;
}

/** A one-line description of a model, as the page shows it. */
export function describeModel(choice: ModelChoice): string {
  return choice.model === 'MLP'
    ? `MLP 784-${choice.hidden}-${choice.hidden}-10 (ReLU)`
    : 'CNN conv3×3/2(8)-conv3×3/2(16)-dense(10) (ReLU)';
}

/**
 * The model of `choice`, taking `[batch, 784]` pixels and giving 10 logits (no softmax: the loss
 * applies it). Kernels are Glorot-uniform from `seed`, `seed + 1`, `seed + 2` (drawn in
 * JavaScript, so equal on every backend), biases zero.
 *
 * - `'MLP'`: 784 → hidden (ReLU) → hidden (ReLU) → 10;
 * - `'CNN'`: the benchmarks' small CNN (`benchmarks/src/suites/tasks.ts`): the pixels reshaped to
 *   28×28×1, a 3×3 convolution with stride 2 to 8 channels (ReLU), another to 16 channels (ReLU),
 *   flattened, → 10. Both convolutions and the last layer are second-order for MKOR, KFAC and Eva.
 */
export function buildModel(choice: ModelChoice): tf.Sequential {
  const { model, hidden, seed } = choice;
  if (!(Number.isInteger(seed))) throw new RangeError(`buildModel: seed must be an integer, got ${seed}`);
  const kernel = (offset: number) => tf.initializers.glorotUniform({ seed: seed + offset });
  if (model === 'CNN') {
    return tf.sequential({
      layers: [
        tf.layers.reshape({ inputShape: [784], targetShape: [28, 28, 1] }),
        tf.layers.conv2d({ filters: 8, kernelSize: 3, strides: 2, activation: 'relu', kernelInitializer: kernel(0) }),
        tf.layers.conv2d({ filters: 16, kernelSize: 3, strides: 2, activation: 'relu', kernelInitializer: kernel(1) }),
        tf.layers.flatten(),
        tf.layers.dense({ units: 10, kernelInitializer: kernel(2) }),
      ],
    });
  }
  if (model !== 'MLP') throw new RangeError(`buildModel: unknown model '${String(model)}' (expected one of ${MODEL_NAMES.join(', ')})`);
  if (!(Number.isInteger(hidden) && hidden > 0)) throw new RangeError(`buildModel: hidden must be a positive integer, got ${hidden}`);
  return tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [784], units: hidden, activation: 'relu', kernelInitializer: kernel(0) }),
      tf.layers.dense({ units: hidden, activation: 'relu', kernelInitializer: kernel(1) }),
      tf.layers.dense({ units: 10, kernelInitializer: kernel(2) }),
    ],
  });
}
