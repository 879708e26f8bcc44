/** The model the playground trains: a Fashion-MNIST MLP with seeded initial weights. */
import * as tf from '@tensorflow/tfjs';

/**
 * The MLP 784 → hidden (ReLU) → hidden (ReLU) → 10 logits (no softmax: the loss applies it).
 * Kernels are Glorot-uniform from `seed`, `seed + 1`, `seed + 2` (drawn in JavaScript, so equal on
 * every backend), biases zero.
 */
export function buildMlp(hidden: number, seed: number): tf.Sequential {
  if (!(Number.isInteger(hidden) && hidden > 0)) throw new RangeError(`buildMlp: hidden must be a positive integer, got ${hidden}`);
  if (!Number.isInteger(seed)) throw new RangeError(`buildMlp: seed must be an integer, got ${seed}`);
  const kernel = (offset: number) => tf.initializers.glorotUniform({ seed: seed + offset });
  return tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [784], units: hidden, activation: 'relu', kernelInitializer: kernel(0) }),
      tf.layers.dense({ units: hidden, activation: 'relu', kernelInitializer: kernel(1) }),
      tf.layers.dense({ units: 10, kernelInitializer: kernel(2) }),
    ],
  });
}
