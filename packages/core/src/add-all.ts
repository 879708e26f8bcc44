import * as tf from '@tensorflow/tfjs-core';

/** The most inputs {@link addAll} gives one `AddN` kernel. */
export const ADD_ALL_GROUP_SIZE = 4;

/**
 * `Σ tensors`, entry by entry, for tensors of one shape and dtype: what `tf.addN` computes, made
 * of `AddN` kernels of at most {@link ADD_ALL_GROUP_SIZE} inputs each (a tree of sums).
 *
 * `tf.addN` itself is not safe on every backend: tfjs-backend-webgpu 4.22 binds each input of
 * one `AddN` as a storage buffer and, past the device's `maxStorageBuffersPerShaderStage − 1`
 * inputs (7 on a default WebGPU device), records an invalid dispatch: the result is silently
 * wrong (measured in Chromium: 0 or a stale buffer's contents for 8 or more inputs) and every
 * kernel submitted with it is lost. Use this wherever the number of inputs grows with the model
 * (one per layer or per parameter).
 *
 * @param tensors - one or more tensors of one shape and dtype. Not disposed.
 * @returns a new tensor the caller owns.
 * @throws RangeError for an empty list or tensors of different shapes or dtypes.
 */
export function addAll<T extends tf.Tensor>(tensors: readonly T[]): T {
  const first = tensors[0];
  if (first === undefined) throw new RangeError('addAll: tensors must hold at least one tensor, got none');
  const odd = tensors.find((t) => t.dtype !== first.dtype || !tf.util.arraysEqual(t.shape, first.shape));
  if (odd !== undefined) {
    throw new RangeError(`addAll: tensors must have one shape and dtype, got ${first.dtype} [${first.shape.join(', ')}] and ${odd.dtype} [${odd.shape.join(', ')}]`);
  }
  return tf.tidy(() => {
    let level: readonly tf.Tensor[] = tensors;
    while (level.length > 1) {
      const next: tf.Tensor[] = [];
      for (let start = 0; start < level.length; start += ADD_ALL_GROUP_SIZE) {
        const group = level.slice(start, start + ADD_ALL_GROUP_SIZE);
        next.push(group.length === 1 ? (group[0] as tf.Tensor) : tf.addN(group));
      }
      level = next;
    }
    // One input: a copy, so the result is always the caller's to dispose.
    return (level[0] === first ? tf.clone(first) : level[0]) as T;
  });
}
