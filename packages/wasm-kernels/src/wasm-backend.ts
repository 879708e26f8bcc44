/**
 * The few internals of tfjs-backend-wasm 4.22 the kernels use: where a tensor's data lives on
 * the wasm heap, how an output is allocated, how an intermediate is freed.
 */
import type { DataId, DataType, TensorInfo } from '@tensorflow/tfjs-core';

/** The part of `BackendWasm` (tfjs-backend-wasm 4.22) the kernels rely on. */
export interface WasmBackendInternals {
  /**
   * The emscripten module: its heap, and the WebAssembly.Memory the fused kernels import —
   * `asm.memory` in the unthreaded builds (exported), `wasmMemory` in the threaded one (imported).
   */
  readonly wasm: { readonly HEAPU8: Uint8Array; readonly asm?: { readonly memory?: unknown }; readonly wasmMemory?: unknown };
  readonly dataIdMap: { get(dataId: DataId): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: DataType): TensorInfo;
  disposeData(dataId: DataId): boolean;
}

/** The heap's current buffer: read it afresh after any allocation (wasm memory can grow). */
export function heapBuffer(backend: WasmBackendInternals): ArrayBufferLike {
  return backend.wasm.HEAPU8.buffer;
}

/** Byte offset of a float32 tensor's data on the heap. */
export function byteOffsetOf(backend: WasmBackendInternals, t: TensorInfo): number {
  const entry = backend.dataIdMap.get(t.dataId);
  if (entry === undefined) throw new Error('wasm-kernels: a tensor is not on the wasm backend');
  return entry.memoryOffset;
}

/** A float32 view of a tensor's data on the heap (valid until the next allocation). */
export function heapView(backend: WasmBackendInternals, t: TensorInfo): Float32Array {
  const size = t.shape.reduce((a, b) => a * b, 1);
  return new Float32Array(heapBuffer(backend), byteOffsetOf(backend, t), size);
}

/** Frees intermediates made inside a kernel. */
export function disposeAll(backend: WasmBackendInternals, infos: readonly TensorInfo[]): void {
  for (const info of infos) backend.disposeData(info.dataId);
}
