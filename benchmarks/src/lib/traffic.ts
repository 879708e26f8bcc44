/**
 * The memory traffic of a TensorFlow.js computation, counted from its kernels: every kernel is
 * assumed to read each input once and write its output once (true of the elementwise kernels
 * and of a matrix–vector product; a matrix–matrix product re-reads its inputs, so this is a
 * lower bound there). Reshapes only relabel a buffer and move no data.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Kernels that move no data on the cpu and wasm backends. */
const METADATA_ONLY_KERNELS = new Set(['Reshape']);

/** One kernel of a profiled computation and the bytes it moves. */
export interface KernelTraffic {
  readonly name: string;
  readonly inputShapes: readonly (readonly number[])[];
  readonly outputShapes: readonly (readonly number[])[];
  readonly bytes: number;
}

const elementsOf = (shape: readonly number[]): number => shape.reduce((n, s) => n * s, 1);

/**
 * Profiles `run` once and returns its kernels with the bytes each reads and writes (float32,
 * 4 bytes an element). `run`'s result is disposed.
 */
export async function kernelTraffic(run: () => tf.Tensor): Promise<KernelTraffic[]> {
  const profile = await tf.profile(run);
  tf.dispose(profile.result);
  return profile.kernels.map((kernel) => {
    const moved = METADATA_ONLY_KERNELS.has(kernel.name)
      ? 0
      : [...kernel.inputShapes, ...kernel.outputShapes].reduce((n, shape) => n + elementsOf(shape ?? []), 0) * 4;
    return { name: kernel.name, inputShapes: kernel.inputShapes, outputShapes: kernel.outputShapes, bytes: moved };
  });
}
