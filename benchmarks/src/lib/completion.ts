import * as tf from '@tensorflow/tfjs-core';

/**
 * Waits for `t` to be computed by reading back its first element: a one-element slice depends
 * on the whole kernel that produced `t`, so this forces completion on any backend (on wasm and
 * cpu kernels already run eagerly) without copying the whole result out.
 */
export function forceCompletion(t: tf.Tensor): void {
  const first = tf.slice(t, new Array<number>(t.rank).fill(0), new Array<number>(t.rank).fill(1));
  first.dataSync();
  first.dispose();
}
