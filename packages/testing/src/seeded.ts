/**
 * Deterministic test data: values from a linear congruential generator, so that a failing test
 * reproduces without a stored seed.
 */
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';

/**
 * An endless stream of deterministic values in [-1, 1) from `seed` (a linear congruential
 * generator), for tests that draw their data one value at a time.
 */
export function seededStream(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 31 - 1;
  };
}

/** `count` deterministic values in [-1, 1) from `seed` ({@link seededStream}'s first `count`), so failures reproduce. */
export function seeded(count: number, seed: number): Float32Array {
  return Float32Array.from({ length: count }, seededStream(seed));
}

/** A float32 tensor of `shape` filled with {@link seeded} values. */
export function seededTensor(shape: number[], seed: number): tf.Tensor {
  return tf.tensor(seeded(shape.reduce((p, s) => p * s, 1), seed), shape);
}

/**
 * Asserts `max |actual − expected| ≤ tolerance · scale` entry by entry in row-major order, with
 * `expected` a float64 reference of the same number of entries.
 */
export function expectCloseTo64(actual: tf.Tensor, expected: Float64Array, tolerance: number, scale: number): void {
  expect(actual.size).toBe(expected.length);
  const values = actual.dataSync();
  const worst = Math.max(0, ...Array.from(expected, (e, i) => Math.abs((values[i] as number) - e)));
  expect(worst).toBeLessThanOrEqual(tolerance * scale);
}
