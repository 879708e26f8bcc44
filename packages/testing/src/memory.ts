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

/**
 * Runs `fn` and returns how many synchronous read-backs it asked for: calls of
 * `tf.engine().readSync`, which every `dataSync()`/`arraySync()` makes. A backend's own reads
 * inside its kernels (tfjs-backend-wasm's `Slice` reads its input) are not counted: they are no
 * stall of a GPU pipeline.
 */
export function countReadBacks(fn: () => void): number {
  const engine = tf.engine() as unknown as { readSync: (dataId: unknown) => unknown };
  const original = engine.readSync;
  let count = 0;
  engine.readSync = function (this: unknown, dataId: unknown) {
    count++;
    return original.call(this, dataId);
  };
  try {
    fn();
  } finally {
    engine.readSync = original;
  }
  return count;
}
