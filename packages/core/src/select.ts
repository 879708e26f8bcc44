import * as tf from '@tensorflow/tfjs-core';

/**
 * `condition ? a : b` for a boolean scalar `condition` that stays on the device (nothing is read
 * back), entry by entry, so NaN or Inf in the branch not taken does not leak into the result.
 *
 * It gives what `tf.where(condition, a, b)` gives, at a fraction of the cost: tfjs-core's `where`
 * broadcasts a scalar condition to the full shape with the `Tile` kernel, which on the wasm
 * backend is an unvectorised loop (about 18 ms for a 785 × 256 matrix, against 2.8 ms here, and
 * more than the matrix products of a preconditioning step around it). Here the mask is broadcast
 * by an addition, which every backend broadcasts natively.
 *
 * @param condition - a bool tensor with one element (any rank). Not disposed.
 * @param a - taken where `condition` is true. Not disposed.
 * @param b - taken where `condition` is false; same shape and dtype as `a`. Not disposed.
 * @returns a new tensor of `a`'s shape and dtype.
 * @throws RangeError when `condition` is not a one-element bool tensor or `a` and `b` differ in
 *   shape or dtype.
 */
export function selectByScalar<T extends tf.Tensor>(condition: tf.Tensor, a: T, b: T): T {
  const where = 'selectByScalar';
  if (condition.dtype !== 'bool' || condition.size !== 1) {
    throw new RangeError(`${where}: condition must be a bool tensor with one element, got ${condition.dtype} of shape [${condition.shape.join(', ')}]`);
  }
  if (a.dtype !== b.dtype || a.shape.length !== b.shape.length || a.shape.some((n, i) => n !== b.shape[i])) {
    throw new RangeError(`${where}: a and b must have one shape and dtype, got ${a.dtype} [${a.shape.join(', ')}] and ${b.dtype} [${b.shape.join(', ')}]`);
  }
  return tf.tidy(() => {
    const flag = tf.cast(tf.reshape(condition, []), 'float32');
    const mask = tf.cast(tf.add(tf.zeros(a.shape), flag), 'bool');
    return tf.where(mask, a, b) as T;
  });
}
