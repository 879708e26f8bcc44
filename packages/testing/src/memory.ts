import * as tf from '@tensorflow/tfjs-core';

/**
 * Runs `fn` and returns its result with the number of tensors it left allocated
 * (`tf.memory().numTensors` after minus before, after disposing `dispose(result)`).
 * A stepping component is leak-free when this is 0 once its outputs are disposed.
 */
export function countLeakedTensors<T>(fn: () => T, dispose: (result: T) => void = () => undefined): { result: T; leaked: number } {
  const before = tf.memory().numTensors;
  const result = fn();
  dispose(result);
  return { result, leaked: tf.memory().numTensors - before };
}
