/**
 * Prelude `data-parallel`: what a data-parallel training script assumes — a model builder and
 * tiny batches (8 inputs, 3 classes), in the two shapes the guides use.
 */
import * as tf from '@tensorflow/tfjs';

/** The same small dense classifier on every rank (8 → 16 → 3, softmax logits not applied). */
export function buildModel(): tf.Sequential {
  return tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [8], units: 16, activation: 'relu' }),
      tf.layers.dense({ units: 3 }),
    ],
  });
}

/** One labelled batch of `size` rows starting at row `offset` of step `step`'s data. */
export function batch(step: number, offset: number, size: number): { x: tf.Tensor2D; y: tf.Tensor2D } {
  return tf.tidy(() => {
    const x = tf.randomNormal([size, 8], 0, 1, 'float32', step * 1000 + offset) as tf.Tensor2D;
    const y = tf.oneHot(tf.argMax(x.slice([0, 0], [size, 3]), 1), 3).toFloat() as tf.Tensor2D;
    return { x, y };
  });
}

/** Steps to train, and rows per rank and step. */
export const steps = 3;
export const shardSize = 16;
/** Three global batches of 32 rows. */
export const batches = [0, 1, 2].map((step) => batch(step, 0, 32));

/** Rows `[rank·n/worldSize, (rank+1)·n/worldSize)` of a global batch: this rank's equal shard. */
export function sliceForRank(global: { x: tf.Tensor2D; y: tf.Tensor2D }, rank: number, worldSize: number): { x: tf.Tensor2D; y: tf.Tensor2D } {
  const rows = global.x.shape[0] / worldSize;
  return { x: global.x.slice([rank * rows, 0], [rows, -1]), y: global.y.slice([rank * rows, 0], [rows, -1]) };
}
