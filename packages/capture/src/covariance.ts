import * as tf from '@tensorflow/tfjs-core';

/** `(1/n) RᵀR` of the `n` rows of `rows` (`[n, d]`): a `[d, d]` second moment. */
function secondMoment(rows: tf.Tensor2D): tf.Tensor2D {
  const n = rows.shape[0];
  // An explicit transpose: the wasm matMul with a transpose flag is far slower.
  return tf.div(tf.matMul(tf.transpose(rows), rows), tf.scalar(n));
}

/**
 * `(1/n) Σᵢ vᵢ vᵢᵀ` over the rows of `x` (every axis but the last: `[batch, d]`,
 * `[batch, seq, d]`, `[batch, H, W, c]`, ...): a dense layer's input covariance `(1/n) XᵀX`, or
 * any layer's output-gradient covariance `(1/n) Σᵢ dyᵢ dyᵢᵀ`. `x` is not disposed.
 */
export function rowSecondMoment(x: tf.Tensor): tf.Tensor2D {
  return tf.tidy(() => {
    const d = x.shape[x.rank - 1] as number;
    return secondMoment(tf.reshape(x, [-1, d]));
  });
}

/** The geometry of a channelsLast conv2d layer, as `tf.conv2d` takes it. */
export interface PatchGeometry {
  readonly kernelSize: readonly [number, number];
  readonly strides: readonly [number, number];
  readonly padding: 'valid' | 'same';
  readonly dilationRate: readonly [number, number];
}

/**
 * The unfolded-patch covariance `(1/n) PᵀP` of a conv2d layer's NHWC input, `P` the im2col
 * matrix (`n = batch·outH·outW` rows, `kh·kw·cin` columns in the order of the kernel reshaped to
 * `[kh·kw·cin, cout]`, zeros where a patch reaches into 'same' padding). `P` is formed by a
 * convolution with the identity kernel `eye(kh·kw·cin)` reshaped to `[kh, kw, cin, kh·kw·cin]`,
 * which copies every patch into the channels of its output position: `n·kh·kw·cin` floats of
 * memory and `O(n·(kh·kw·cin)²)` work, as much as the covariance product itself.
 */
export function conv2dPatchSecondMoment(x: tf.Tensor4D, geometry: PatchGeometry): tf.Tensor2D {
  return tf.tidy(() => {
    const channels = x.shape[3];
    const [kh, kw] = geometry.kernelSize;
    const patchSize = kh * kw * channels;
    const unfold = tf.reshape(tf.eye(patchSize), [kh, kw, channels, patchSize]) as tf.Tensor4D;
    const patches = tf.conv2d(x, unfold, [geometry.strides[0], geometry.strides[1]], geometry.padding, 'NHWC', [
      geometry.dilationRate[0],
      geometry.dilationRate[1],
    ]);
    return secondMoment(tf.reshape(patches, [-1, patchSize]));
  });
}
