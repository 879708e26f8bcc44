/**
 * Works around tfjs-backend-wasm 4.22 reusing the packed second operand of a product when the
 * same data comes back under another shape (a reshape shares the data id): `matMul(x, p)` then
 * `matMul(y, reshape(p, …))` computed the second product with the first layout.
 */
import type { DataId, TensorInfo } from '@tensorflow/tfjs-core';
import { heapView, type WasmBackendInternals } from './wasm-backend';

/** Remembers the shape each data id was last used under as a product's second operand. */
export class StaleLayoutGuard {
  private readonly shapes = new WeakMap<DataId, string>();

  /**
   * `b` itself when its data was last multiplied under the same shape (or never), else a fresh
   * copy of it (a new data id, so nothing packed for the old shape is reused). The caller frees
   * a copy.
   */
  operand(backend: WasmBackendInternals, b: TensorInfo): TensorInfo {
    const key = b.shape.join(',');
    const previous = this.shapes.get(b.dataId);
    if (previous === undefined || previous === key) {
      this.shapes.set(b.dataId, key);
      return b;
    }
    const copy = backend.makeOutput([...b.shape], b.dtype);
    heapView(backend, copy).set(heapView(backend, b));
    return copy;
  }
}
