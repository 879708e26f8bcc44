/**
 * Shared by the tests and the rank program run under `mpirun`: a small Fashion-MNIST MLP, its
 * batches and shards, and the distance between two sets of weights.
 */
import type { ImageSplit } from '@mkor/datasets';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

/** The collective timeout of the trainers in the rank program's `failing` mode (ms). */
export const FAILING_TIMEOUT_MS = 5_000;

/** A 784-`hidden`-10 MLP (ReLU, logits out) whose initial weights depend on `seed` only. */
export function mlp(seed: number, hidden: readonly number[] = [32]): tfl.Sequential {
  const model = tfl.sequential();
  hidden.forEach((units, k) => {
    model.add(
      tfl.layers.dense({
        units,
        activation: 'relu',
        ...(k === 0 ? { inputShape: [784] } : {}),
        kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + k }),
      }),
    );
  });
  model.add(tfl.layers.dense({ units: 10, kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + hidden.length }) }));
  return model;
}

/** The `tf.Variable`s behind a model's trainable weights, in the model's order. */
export function trainableVariables(model: tfl.LayersModel): tf.Variable[] {
  return model.trainableWeights.map((weight) => (weight as unknown as { val: tf.Variable }).val);
}

/** Images `[count, 784]` and one-hot labels of rows `[start, start + count)` of a split (caller disposes). */
export function rowsOf(split: ImageSplit, start: number, count: number): { x: tf.Tensor2D; y: tf.Tensor2D } {
  const x = tf.tensor2d(split.images.subarray(start * 784, (start + count) * 784), [count, 784]);
  const y = tf.tidy(() => tf.cast(tf.oneHot(tf.tensor1d(split.labels.subarray(start, start + count), 'int32'), 10), 'float32') as tf.Tensor2D);
  return { x, y };
}

/** The mean-reduced softmax cross-entropy of a model on one batch, as a loss closure. */
export function crossEntropy(model: tfl.LayersModel, batch: { x: tf.Tensor2D; y: tf.Tensor2D }): () => tf.Scalar {
  return () => tf.losses.softmaxCrossEntropy(batch.y, model.apply(batch.x, { training: true }) as tf.Tensor) as tf.Scalar;
}

/** Copies of a model's weights as host arrays. */
export function weightsOf(model: tfl.LayersModel): Float32Array[] {
  return model.getWeights().map((weight) => Float32Array.from(weight.dataSync()));
}

/**
 * How far `weights` are from `reference`, in float64: the largest absolute difference, and the
 * Frobenius norm of the difference over that of `reference − origin` (the distance training moved
 * the reference), so the number reads as "the fraction of the trajectory that differs".
 */
export function trajectoryDistance(
  weights: readonly Float32Array[],
  reference: readonly Float32Array[],
  origin: readonly Float32Array[],
): { maxAbs: number; relative: number } {
  let maxAbs = 0;
  let difference2 = 0;
  let moved2 = 0;
  reference.forEach((values, i) => {
    values.forEach((x, j) => {
      const error = ((weights[i] as Float32Array)[j] as number) - x;
      const moved = x - ((origin[i] as Float32Array)[j] as number);
      maxAbs = Math.max(maxAbs, Math.abs(error));
      difference2 += error * error;
      moved2 += moved * moved;
    });
  });
  return { maxAbs, relative: Math.sqrt(difference2 / moved2) };
}
