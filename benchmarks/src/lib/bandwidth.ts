/**
 * The machine's memory bandwidth, measured in the same run as the kernels it is compared with:
 * a `Float32Array` copy and a STREAM-style triad in plain JS, and an elementwise `tf.add` of
 * two large tensors on the current TensorFlow.js backend. Arrays are far larger than the caches
 * so the numbers are DRAM bandwidth, counted as bytes read plus bytes written.
 */
import * as tf from '@tensorflow/tfjs-core';

import { forceCompletion } from './completion';
import { type MeasureOptions, type Timing, measure } from './timing';

/** One bandwidth measurement. */
export interface Bandwidth {
  readonly name: string;
  /** Bytes read plus bytes written per run. */
  readonly bytes: number;
  readonly timing: Timing;
  /** `bytes / median time`, in GB/s (10⁹ bytes). */
  readonly gigabytesPerSecond: number;
}

function bandwidth(name: string, bytes: number, timing: Timing): Bandwidth {
  return { name, bytes, timing, gigabytesPerSecond: bytes / (timing.medianMs * 1e6) };
}

/** Sequential-access bandwidth probes on arrays of `elements` float32 values. */
export function measureMemoryBandwidth(elements: number, options: MeasureOptions = {}): Bandwidth[] {
  const source = new Float32Array(elements).map((_, i) => (i % 1000) * 1e-3);
  const other = new Float32Array(elements).fill(0.5);
  const target = new Float32Array(elements);
  const copy = measure(() => target.set(source), options);
  const scalar = 3;
  const triad = measure(() => {
    for (let i = 0; i < elements; i++) target[i] = (source[i] as number) + scalar * (other[i] as number);
  }, options);
  const a = tf.tensor1d(source);
  const b = tf.tensor1d(other);
  const add = measure(() => {
    const sum = tf.add(a, b);
    forceCompletion(sum);
    sum.dispose();
  }, options);
  tf.dispose([a, b]);
  const bytes = elements * 4;
  return [
    bandwidth('JS `Float32Array.set` copy (read 1, write 1)', 2 * bytes, copy),
    bandwidth('JS triad `a[i] = b[i] + s·c[i]` (read 2, write 1)', 3 * bytes, triad),
    bandwidth(`\`tf.add\` of two tensors on ${tf.getBackend()} (read 2, write 1)`, 3 * bytes, add),
  ];
}
