/**
 * Matrix products on the wasm backend without XNNPACK's slow transposed paths: either a
 * {@link HeapGemm} on the heap, or an explicit transpose followed by tfjs's own plain product.
 */
import { broadcast_util, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import type { HeapGemm } from '@mkor/core';
import { byteOffsetOf, disposeAll, heapBuffer, heapView, type WasmBackendInternals } from './wasm-backend';

/** tfjs's own wasm kernels the products delegate to. */
export interface OriginalKernels {
  readonly transpose: KernelFunc;
  readonly batchMatMul: KernelFunc;
}

/** Sizes of `op(a) · op(b)` for operands of rank ≥ 2 with broadcast batch dimensions. */
export interface ProductShape {
  m: number;
  n: number;
  k: number;
  /** The broadcast batch shape of the output. */
  batchShape: number[];
  /** The output shape: batchShape then [m, n]. */
  outShape: number[];
}

/** Computes the {@link ProductShape}; throws tfjs's message when the inner sizes differ. */
export function productShape(
  where: string,
  aShape: readonly number[],
  bShape: readonly number[],
  transposeA: boolean,
  transposeB: boolean,
): ProductShape {
  const ra = aShape.length;
  const rb = bShape.length;
  const m = (transposeA ? aShape[ra - 1] : aShape[ra - 2])!;
  const kA = (transposeA ? aShape[ra - 2] : aShape[ra - 1])!;
  const kB = (transposeB ? bShape[rb - 1] : bShape[rb - 2])!;
  const n = (transposeB ? bShape[rb - 2] : bShape[rb - 1])!;
  if (kA !== kB) {
    throw new Error(
      `${where}: inner sizes ${kA} and ${kB} of shapes [${aShape.join(', ')}] and [${bShape.join(', ')}] ` +
        `(transposeA=${transposeA}, transposeB=${transposeB}) must match`,
    );
  }
  const batchShape = broadcast_util.assertAndGetBroadcastShape(aShape.slice(0, -2), bShape.slice(0, -2));
  return { m, n, k: kA, batchShape, outShape: [...batchShape, m, n] };
}

/** For each output batch index, the batch index of an operand with `operandBatch` dimensions. */
function broadcastIndices(outBatch: readonly number[], operandBatch: readonly number[]): number[] {
  const total = outBatch.reduce((x, y) => x * y, 1);
  const padded = [...new Array<number>(outBatch.length - operandBatch.length).fill(1), ...operandBatch];
  const indices: number[] = [];
  for (let flat = 0; flat < total; flat++) {
    let rest = flat;
    let index = 0;
    let stride = 1;
    for (let d = outBatch.length - 1; d >= 0; d--) {
      const size = outBatch[d]!;
      const coordinate = rest % size;
      rest = Math.floor(rest / size);
      if (padded[d] !== 1) index += coordinate * stride;
      stride *= padded[d]!;
    }
    indices.push(index);
  }
  return indices;
}

/** A single stride that maps output batch i to operand batch indices[i], or null. */
function uniformStride(indices: readonly number[]): number | null {
  if (indices.length < 2) return 0;
  const step = indices[1]! - indices[0]!;
  if (step !== 0 && step !== 1) return null;
  return indices.every((v, i) => v === i * step) ? step : null;
}

/**
 * Writes `op(a) · op(b)` into `out` (already allocated, shape {@link ProductShape.outShape}) with
 * the provider: one call when each operand's batch is either full or broadcast, else one call
 * per output matrix.
 */
export function gemmInto(
  gemm: HeapGemm,
  backend: WasmBackendInternals,
  a: TensorInfo,
  b: TensorInfo,
  out: TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  shape: ProductShape,
): void {
  const { m, n, k, batchShape } = shape;
  const aIndices = broadcastIndices(batchShape, a.shape.slice(0, -2));
  const bIndices = broadcastIndices(batchShape, b.shape.slice(0, -2));
  const aOffset = byteOffsetOf(backend, a);
  const bOffset = byteOffsetOf(backend, b);
  const cOffset = byteOffsetOf(backend, out);
  const heap = heapBuffer(backend);
  const aStep = uniformStride(aIndices);
  const bStep = uniformStride(bIndices);
  const base = { m, n, k, transposeA, transposeB, cBatchStride: m * n };
  if (aStep !== null && bStep !== null) {
    gemm(heap, {
      ...base,
      aOffset,
      bOffset,
      cOffset,
      batch: aIndices.length,
      aBatchStride: aStep * m * k,
      bBatchStride: bStep * k * n,
    });
    return;
  }
  for (let i = 0; i < aIndices.length; i++) {
    gemm(heap, {
      ...base,
      aOffset: aOffset + 4 * aIndices[i]! * m * k,
      bOffset: bOffset + 4 * bIndices[i]! * k * n,
      cOffset: cOffset + 4 * i * m * n,
      batch: 1,
      aBatchStride: 0,
      bBatchStride: 0,
    });
  }
}

/** The last two dimensions of `x` swapped, by tfjs's wasm Transpose kernel. */
export function transposeLastTwo(originals: OriginalKernels, backend: WasmBackendInternals, x: TensorInfo): TensorInfo {
  const r = x.shape.length;
  const perm = [...Array.from({ length: r - 2 }, (_, i) => i), r - 1, r - 2];
  return originals.transpose({ inputs: { x }, backend: backend as never, attrs: { perm } }) as TensorInfo;
}

/**
 * `x` itself when its batch is the whole output batch or a single matrix (tfjs-backend-wasm's
 * product handles both), else a copy with its matrices repeated to the output batch (its
 * product returns max(batchA, batchB) matrices for other broadcasts, e.g. [2, 1] by [1, 3]).
 */
export function broadcastOperand(backend: WasmBackendInternals, x: TensorInfo, batchShape: readonly number[]): TensorInfo {
  const indices = broadcastIndices(batchShape, x.shape.slice(0, -2));
  const ownBatch = x.shape.slice(0, -2).reduce((p, q) => p * q, 1);
  if (ownBatch === 1 || ownBatch === indices.length) return x;
  const matrix = x.shape[x.shape.length - 2]! * x.shape[x.shape.length - 1]!;
  const copy = backend.makeOutput([...batchShape, ...x.shape.slice(-2)], 'float32');
  const [to, from] = [heapView(backend, copy), heapView(backend, x)];
  indices.forEach((index, i) => to.set(from.subarray(index * matrix, (index + 1) * matrix), i * matrix));
  return copy;
}

/**
 * Makes both operands plain (untransposed) by explicit transposes, calls `product` on them,
 * and frees the transposed copies.
 */
export function withPlainOperands(
  originals: OriginalKernels,
  backend: WasmBackendInternals,
  a: TensorInfo,
  b: TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  product: (a: TensorInfo, b: TensorInfo) => TensorInfo,
): TensorInfo {
  const plainA = transposeA ? transposeLastTwo(originals, backend, a) : a;
  const plainB = transposeB ? transposeLastTwo(originals, backend, b) : b;
  try {
    return product(plainA, plainB);
  } finally {
    disposeAll(backend, [plainA, plainB].filter((t, i) => t !== (i === 0 ? a : b)));
  }
}
