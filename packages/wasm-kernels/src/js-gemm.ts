/**
 * A plain TypeScript {@link HeapGemm}: slow, float64-accumulating, for testing the provider path
 * without a native library.
 */
import type { HeapGemm, HeapGemmCall } from '@mkor/core';

/**
 * Computes the products of a {@link HeapGemmCall} in plain TypeScript, accumulating in float64.
 * Meant for tests of the provider path; a real provider (e.g. `@mkor/openblas`) is much faster.
 */
export const jsHeapGemm: HeapGemm = (heap: ArrayBufferLike, call: HeapGemmCall): void => {
  const { m, n, k, transposeA, transposeB } = call;
  const f32 = new Float32Array(heap);
  const a0 = call.aOffset / 4;
  const b0 = call.bOffset / 4;
  const c0 = call.cOffset / 4;
  for (let p = 0; p < call.batch; p++) {
    const a = a0 + p * call.aBatchStride;
    const b = b0 + p * call.bBatchStride;
    const c = c0 + p * call.cBatchStride;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let sum = 0;
        for (let l = 0; l < k; l++) {
          const x = f32[a + (transposeA ? l * m + i : i * k + l)]!;
          const y = f32[b + (transposeB ? j * k + l : l * n + j)]!;
          sum += x * y;
        }
        f32[c + i * n + j] = sum;
      }
    }
  }
};
