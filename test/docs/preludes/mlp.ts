/**
 * Prelude `mlp`: a small compiled-later classifier and its data, for fragments that train "a
 * model" on `x`/`y`. 8 inputs, 3 classes, 64 samples: a fit takes well under a second.
 */
import * as tf from '@tensorflow/tfjs';

/** A dense 8 → 16 → 3 softmax classifier, not compiled. */
export const model = tf.sequential({
  layers: [
    tf.layers.dense({ inputShape: [8], units: 16, activation: 'relu' }),
    tf.layers.dense({ units: 3, activation: 'softmax' }),
  ],
});
/** 64 random inputs. */
export const x = tf.randomNormal([64, 8], 0, 1, 'float32', 1);
/** One-hot labels: the class is the index of the largest of the first three inputs. */
export const y = tf.oneHot(tf.argMax(x.slice([0, 0], [64, 3]), 1), 3);
