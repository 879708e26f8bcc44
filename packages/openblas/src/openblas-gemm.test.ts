import * as tf from '@tensorflow/tfjs-core';
import { matmul, matrix, transpose, type Matrix64 } from '@mkor/testing';
import { seeded } from '@mkor/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { loadOpenBlasGemm, type HeapGemmCall } from './index';

const load = loadOpenBlasGemm();
// Only these tests need the addon; the loader's fallback and the validation are tested always.
if (load.gemm === null) console.warn(`openblas gemm tests skipped: ${load.reason}`);
const describeBuilt = load.gemm === null ? describe.skip : describe;

const UNIT_ROUNDOFF = 2 ** -24;

/** Matrix i of an operand stored rows×cols at `offset` bytes + i·stride elements in `heap`. */
function readMatrix(heap: ArrayBufferLike, offset: number, stride: number, index: number, rows: number, cols: number): Matrix64 {
  return matrix(rows, cols, new Float32Array(heap, offset + index * stride * 4, rows * cols));
}

function absolute(m: Matrix64): Matrix64 {
  return matrix(m.rows, m.cols, m.data.map(Math.abs));
}

/**
 * Checks every C_i against the float64 product of the float32 inputs. Any summation order of k
 * float32 products (FMA or not), then the final rounding, stays within (k + 1)·u·(|op(A)|·|op(B)|)_ij
 * of the exact value (u = 2⁻²⁴; the classic γ_k bound, with (k + 1)u ≥ γ_k + u for these k).
 */
function expectProducts(heap: ArrayBufferLike, call: HeapGemmCall, inputs: { a: Float32Array[]; b: Float32Array[] }): void {
  const { m, n, k } = call;
  for (let i = 0; i < call.batch; i++) {
    const aStored = matrix(call.transposeA ? k : m, call.transposeA ? m : k, inputs.a[i] as Float32Array);
    const bStored = matrix(call.transposeB ? n : k, call.transposeB ? k : n, inputs.b[i] as Float32Array);
    const a = call.transposeA ? transpose(aStored) : aStored;
    const b = call.transposeB ? transpose(bStored) : bStored;
    const exact = matmul(a, b);
    const magnitude = matmul(absolute(a), absolute(b));
    const c = readMatrix(heap, call.cOffset, call.cBatchStride, i, m, n);
    // The largest error as a fraction of its bound (NaN, from a C never written, fails too).
    let worst = 0;
    for (let j = 0; j < m * n; j++) {
      const error = Math.abs((c.data[j] as number) - (exact.data[j] as number));
      worst = Math.max(worst, error / ((k + 1) * UNIT_ROUNDOFF * (magnitude.data[j] as number) + Number.MIN_VALUE), Number.isNaN(error) ? Infinity : 0);
    }
    expect(worst, `C_${i}: largest error / its bound`).toBeLessThanOrEqual(1);
  }
}

type HeapKind = 'ArrayBuffer' | 'SharedArrayBuffer' | 'WebAssembly.Memory';

function makeHeap(kind: HeapKind, bytes: number): ArrayBufferLike {
  if (kind === 'ArrayBuffer') return new ArrayBuffer(bytes);
  if (kind === 'SharedArrayBuffer') return new SharedArrayBuffer(bytes);
  return new WebAssembly.Memory({ initial: Math.ceil(bytes / 65536) }).buffer;
}

interface Layout {
  readonly batch: number;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly transposeA: boolean;
  readonly transposeB: boolean;
  /** Per operand: broadcast (stride 0, only A and B) or the padding in elements after each matrix. */
  readonly aBroadcast: boolean;
  readonly bBroadcast: boolean;
  readonly padding: readonly [number, number, number];
  /** Gaps in elements before A, between A and B, between B and C, and after C. */
  readonly gaps: readonly [number, number, number, number];
  readonly heapKind: HeapKind;
  readonly seed: number;
}

const layouts = fc.record({
  batch: fc.integer({ min: 1, max: 3 }),
  m: fc.integer({ min: 1, max: 33 }),
  n: fc.integer({ min: 1, max: 33 }),
  k: fc.integer({ min: 1, max: 70 }),
  transposeA: fc.boolean(),
  transposeB: fc.boolean(),
  aBroadcast: fc.boolean(),
  bBroadcast: fc.boolean(),
  padding: fc.tuple(fc.nat(5), fc.nat(5), fc.nat(5)),
  gaps: fc.tuple(fc.nat(9), fc.nat(9), fc.nat(9), fc.nat(9)),
  heapKind: fc.constantFrom<HeapKind>('ArrayBuffer', 'SharedArrayBuffer', 'WebAssembly.Memory'),
  seed: fc.nat(),
});

/**
 * Lays the operands of `layout` out in one heap filled with random values (C too, so that a
 * product accumulated into C, not written, is seen), runs the gemm, and checks the products and
 * that no byte outside the C matrices changed.
 */
function runLayout(layout: Layout): void {
  const gemm = load.gemm as NonNullable<typeof load.gemm>;
  const { batch, m, n, k, padding, gaps } = layout;
  const aStride = layout.aBroadcast ? 0 : m * k + padding[0];
  const bStride = layout.bBroadcast ? 0 : k * n + padding[1];
  const cStride = m * n + padding[2];
  const span = (stride: number, elements: number): number => (batch - 1) * stride + elements;
  const aStart = gaps[0];
  const bStart = aStart + span(aStride, m * k) + gaps[1];
  const cStart = bStart + span(bStride, k * n) + gaps[2];
  const total = cStart + span(cStride, m * n) + gaps[3];
  const heap = makeHeap(layout.heapKind, total * 4);
  const values = new Float32Array(heap);
  values.set(seeded(values.length, layout.seed));
  const before = values.slice();
  const call: HeapGemmCall = {
    aOffset: aStart * 4,
    bOffset: bStart * 4,
    cOffset: cStart * 4,
    batch,
    m,
    n,
    k,
    transposeA: layout.transposeA,
    transposeB: layout.transposeB,
    aBatchStride: aStride,
    bBatchStride: bStride,
    cBatchStride: cStride,
  };
  const inputs = {
    a: Array.from({ length: batch }, (_, i) => before.slice(aStart + i * aStride, aStart + i * aStride + m * k)),
    b: Array.from({ length: batch }, (_, i) => before.slice(bStart + i * bStride, bStart + i * bStride + k * n)),
  };
  gemm(heap, call);
  expectProducts(heap, call, inputs);
  const isOutput = (index: number): boolean => {
    const offset = index - cStart;
    return offset >= 0 && offset < span(cStride, m * n) && offset % cStride < m * n;
  };
  const changedOutsideC = values.findIndex((value, i) => !isOutput(i) && !Object.is(value, before[i]));
  expect(changedOutsideC, 'first element outside C that changed').toBe(-1);
}

describeBuilt('loadOpenBlasGemm with the addon built', () => {
  it('reports OpenBLAS and its thread count', () => {
    if (load.gemm === null) throw new Error(load.reason);
    expect(load.library).toMatch(/^OpenBLAS \d+\.\d+/);
    expect(Number.isInteger(load.threads) && load.threads >= 1).toBe(true);
    expect(loadOpenBlasGemm()).toBe(load);
  });

  it('computes every transpose combination, batches with and without broadcast, at offsets inside a larger heap of each kind', () => {
    fc.assert(fc.property(layouts, runLayout), { numRuns: 150 });
  });

  it('computes the weight gradient of a Dense layer at training size (multi-threaded OpenBLAS path)', () => {
    // dW = xᵀ·dy with x 256×300 and dy 256×96: transposeA, k = 256.
    runLayout({
      batch: 1,
      m: 300,
      n: 96,
      k: 256,
      transposeA: true,
      transposeB: false,
      aBroadcast: false,
      bBroadcast: false,
      padding: [0, 0, 0],
      gaps: [3, 1, 2, 5],
      heapKind: 'WebAssembly.Memory',
      seed: 7,
    });
  });

  it('refuses a bad call with the parameter named and leaves the heap untouched', () => {
    const gemm = load.gemm as NonNullable<typeof load.gemm>;
    const heap = new ArrayBuffer(256);
    new Float32Array(heap).set(seeded(64, 3));
    const before = new Float32Array(heap).slice();
    const call: HeapGemmCall = {
      aOffset: 0,
      bOffset: 64,
      cOffset: 128,
      batch: 1,
      m: 4,
      n: 4,
      k: 4,
      transposeA: false,
      transposeB: false,
      aBatchStride: 16,
      bBatchStride: 16,
      cBatchStride: 16,
    };
    expect(() => gemm(heap, { ...call, batch: 3 })).toThrow(
      "openBlasGemm: C (cOffset 128, batch 3, cBatchStride 16, 16 elements each) ends at byte 320, past the heap's 256 bytes",
    );
    expect(() => gemm(heap, { ...call, cOffset: 130 })).toThrow('openBlasGemm: cOffset must be a multiple of 4 bytes (float32), got 130');
    expect(() => gemm(heap, { ...call, cOffset: 240 })).toThrow(/^openBlasGemm: C .* past the heap's 256 bytes/);
    expect(() => gemm(new Float32Array(heap) as unknown as ArrayBuffer, call)).toThrow(/^openBlasGemm: heap must be an ArrayBuffer/);
    expect(new Float32Array(heap)).toEqual(before);
  });
});

/** The parts of tfjs-backend-wasm's backend that locate a tensor in its memory. */
interface WasmBackendMemory {
  readonly wasm: { readonly HEAPU8: Uint8Array };
  readonly dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
}

describeBuilt('on the tfjs wasm backend', () => {
  it('computes into an output tensor allocated by the backend, equal to tf.matMul', async () => {
    const gemm = load.gemm as NonNullable<typeof load.gemm>;
    const previous = tf.getBackend();
    await tf.setBackend('wasm');
    try {
      const before = tf.memory().numTensors;
      const backend = tf.backend() as unknown as WasmBackendMemory;
      const offsetOf = (t: tf.Tensor): number => {
        const data = backend.dataIdMap.get(t.dataId);
        if (data === undefined) throw new Error('tensor not on the wasm backend');
        return data.memoryOffset;
      };
      // The input gradient of a Dense layer, dy·wᵀ (transposeB), and its weight gradient, xᵀ·dy (transposeA).
      for (const [transposeA, transposeB] of [
        [false, false],
        [false, true],
        [true, false],
        [true, true],
      ] as const) {
        const [m, n, k] = [37, 29, 64];
        const a = tf.tensor2d(seeded(m * k, 11), transposeA ? [k, m] : [m, k]);
        const b = tf.tensor2d(seeded(k * n, 12), transposeB ? [n, k] : [k, n]);
        const c = tf.zeros([m, n]);
        const expected = tf.matMul(a, b, transposeA, transposeB);
        const call: HeapGemmCall = {
          aOffset: offsetOf(a),
          bOffset: offsetOf(b),
          cOffset: offsetOf(c),
          batch: 1,
          m,
          n,
          k,
          transposeA,
          transposeB,
          aBatchStride: 0,
          bBatchStride: 0,
          cBatchStride: m * n,
        };
        // Read the heap after every allocation: a growing wasm memory replaces its buffer.
        const heap = backend.wasm.HEAPU8.buffer;
        gemm(heap, call);
        expectProducts(heap, call, { a: [a.dataSync() as Float32Array], b: [b.dataSync() as Float32Array] });
        // Both are within (k + 1)·u·|a||b| of the exact product, so within twice that of each other.
        const bound = 2 * (k + 1) * UNIT_ROUNDOFF * k; // |entries| < 1
        const difference = Math.max(...Array.from(c.dataSync(), (value, j) => Math.abs(value - (expected.dataSync()[j] as number))));
        expect(difference).toBeLessThanOrEqual(bound);
        tf.dispose([a, b, c, expected]);
      }
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      await tf.setBackend(previous);
    }
  });
});
