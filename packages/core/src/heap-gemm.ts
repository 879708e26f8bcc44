/**
 * The contract of a matrix-product provider that computes on one memory (the wasm backend's heap),
 * so that no data is copied: `@mkor/openblas` provides one (OpenBLAS's sgemm), `@mkor/wasm-kernels`
 * calls one. Types only: the providers and their users share them from here.
 */

/** One batched product on one memory, as {@link HeapGemm} receives it. */
export interface HeapGemmCall {
  /** Byte offset of A_0 in the heap. */
  aOffset: number;
  /** Byte offset of B_0 in the heap. */
  bOffset: number;
  /** Byte offset of C_0 in the heap. */
  cOffset: number;
  /** Number of products. */
  batch: number;
  /** Rows of op(A_i) and of C_i. */
  m: number;
  /** Columns of op(B_i) and of C_i. */
  n: number;
  /** Columns of op(A_i), rows of op(B_i). */
  k: number;
  /** Whether op(A) = Aᵀ (A_i is then stored k×m). */
  transposeA: boolean;
  /** Whether op(B) = Bᵀ (B_i is then stored n×k). */
  transposeB: boolean;
  /** Elements between A_i and A_{i+1}; 0 broadcasts A_0. */
  aBatchStride: number;
  /** Elements between B_i and B_{i+1}; 0 broadcasts B_0. */
  bBatchStride: number;
  /** Elements between C_i and C_{i+1}. */
  cBatchStride: number;
}

/** Row-major float32 products on one memory: for i < batch,
 *  C_i = op(A_i) · op(B_i), op(X) = transpose ? Xᵀ : X, A_i at aOffset + i·aBatchStride
 *  (bytes for offsets, elements for strides; a stride 0 broadcasts). C is written, not accumulated. */
export interface HeapGemm {
  (heap: ArrayBufferLike, call: HeapGemmCall): void;
}
