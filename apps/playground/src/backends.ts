/**
 * The TensorFlow.js backends the page can train on: webgl and cpu (from `@tensorflow/tfjs`), wasm
 * (its binaries bundled by Vite and located with `setWasmPaths`) and webgpu (registered only where
 * the browser has `navigator.gpu`); on wasm, the engine: tfjs-backend-wasm's kernels as shipped, or
 * with `@mkor/wasm-kernels` registered over them (products with transposed operands, the Conv2D
 * gradients tfjs-backend-wasm 4.22 lacks, and MKOR's fused kernels).
 */
import '@tensorflow/tfjs-backend-webgpu';

import { FUSED_KERNELS } from '@mkor/core';
import { overriddenKernels, registerWasmKernels, unregisterWasmKernels, wasmKernelsRegistered } from '@mkor/wasm-kernels';
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import plainWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import simdWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import threadedSimdWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';

import { BACKEND_NAMES, type BackendName, type ReadBackProbe } from './api';

setWasmPaths({
  'tfjs-backend-wasm.wasm': plainWasm,
  'tfjs-backend-wasm-simd.wasm': simdWasm,
  'tfjs-backend-wasm-threaded-simd.wasm': threadedSimdWasm,
});

/**
 * Makes `name` the current backend, on wasm with `@mkor/wasm-kernels` registered
 * (`wasmKernels: true`) or with tfjs's own kernels restored (false); the other backends ignore
 * `wasmKernels`. Throws, naming it, when the backend cannot start in this browser.
 */
export async function useBackend(name: BackendName, wasmKernels: boolean): Promise<void> {
  if (!BACKEND_NAMES.includes(name)) throw new Error(`useBackend: unknown backend '${String(name)}' (expected one of ${BACKEND_NAMES.join(', ')})`);
  if (typeof wasmKernels !== 'boolean') throw new TypeError(`useBackend: wasmKernels must be a boolean, got ${typeof wasmKernels}`);
  if (name === 'wasm') {
    // The backend starts first, then the kernels are registered, then setBackend again runs their
    // setup on it. The fused kernels run on both of its builds (the threaded one in this
    // cross-origin isolated page keeps its memory as `wasmMemory`).
    if (tf.findBackend('wasm') === null && !(await tf.setBackend('wasm'))) throw new Error('useBackend: the wasm backend could not start in this browser');
    if (wasmKernels) registerWasmKernels();
    else unregisterWasmKernels();
  }
  if (!(await tf.setBackend(name))) throw new Error(`useBackend: the ${name} backend could not start in this browser`);
  await tf.ready();
}

/** The engine of the current wasm backend in words: tfjs's kernels as shipped, or which of `@mkor/wasm-kernels`' are registered. */
export function describeWasmEngine(): string {
  if (!wasmKernelsRegistered()) return 'tfjs-backend-wasm as shipped';
  const fused = Object.values(FUSED_KERNELS).filter((kernel) => tf.getKernel(kernel, 'wasm') !== undefined).length;
  return `tfjs-backend-wasm + @mkor/wasm-kernels (${overriddenKernels.join(', ')}; ${fused} of ${Object.keys(FUSED_KERNELS).length} fused kernels)`;
}

/** The backends that start in this browser (each is tried once; the one current before is restored). */
export async function availableBackends(): Promise<BackendName[]> {
  const current = tf.getBackend();
  const available: BackendName[] = [];
  for (const name of BACKEND_NAMES) {
    // setBackend logs and returns false for a backend whose factory fails; webgpu is absent without navigator.gpu.
    if (tf.findBackendFactory(name) !== null && (await tf.setBackend(name).catch(() => false))) available.push(name);
  }
  if (current !== undefined && current !== tf.getBackend()) await tf.setBackend(current);
  return available;
}

/** What a backend runs on: the WebGL renderer (and whether tfjs renders to float32 textures) or the WebGPU adapter where the browser tells them, the wasm build, or the main thread. */
export async function describeDevice(name: BackendName): Promise<string> {
  if (name === 'webgl') {
    const gl = document.createElement('canvas').getContext('webgl2');
    const info = gl?.getExtension('WEBGL_debug_renderer_info');
    const renderer = gl && info ? String(gl.getParameter(info.UNMASKED_RENDERER_WEBGL)) : 'WebGL 2';
    return `${renderer}, ${tf.env().getBool('WEBGL_RENDER_FLOAT32_ENABLED') ? 'float32' : 'half-float'} textures`;
  }
  if (name === 'webgpu' && 'gpu' in navigator) {
    const gpu = navigator.gpu as { requestAdapter(): Promise<{ info?: { vendor: string; architecture: string } } | null> };
    const adapter = await gpu.requestAdapter();
    return adapter?.info ? `WebGPU ${adapter.info.vendor} ${adapter.info.architecture}` : 'WebGPU';
  }
  if (name === 'wasm') return `WebAssembly (${typeof SharedArrayBuffer === 'undefined' ? 'one thread' : 'threads allowed'}), ${describeWasmEngine()}`;
  return 'JavaScript on the main thread';
}

/**
 * Reads `[1, 2, 3] + 1` back from backend `name` — asynchronously, then synchronously
 * `synchronousReads` times (each a fresh result), then asynchronously again — and reports each
 * outcome, restoring the backend current before. On webgpu `dataSync` copies the buffer through
 * OffscreenCanvas contexts instead of mapping it.
 */
export async function probeReadBacks(name: BackendName, synchronousReads = 1): Promise<ReadBackProbe> {
  if (!(Number.isInteger(synchronousReads) && synchronousReads >= 1)) throw new RangeError(`probeReadBacks: synchronousReads must be a positive integer, got ${synchronousReads}`);
  const previous = tf.getBackend();
  await useBackend(name, wasmKernelsRegistered());
  const attempt = async (read: (t: tf.Tensor) => Promise<ArrayLike<number>> | ArrayLike<number>): Promise<string> => {
    const t = tf.tidy(() => tf.add(tf.tensor1d([1, 2, 3]), 1));
    try {
      return `values ${Array.from(await read(t)).join(', ')}`;
    } catch (error) {
      return `error: ${error instanceof Error ? error.message : String(error)}`;
    } finally {
      t.dispose();
    }
  };
  try {
    const asynchronous = await attempt((t) => t.data());
    let synchronous = '';
    for (let read = 1; read <= synchronousReads; read++) {
      synchronous = await attempt((t) => t.dataSync());
      if (synchronous.startsWith('error')) {
        synchronous = `read ${read}: ${synchronous}`;
        break;
      }
    }
    const asynchronousAfter = await attempt((t) => t.data());
    return { synchronousReads, asynchronous, synchronous, asynchronousAfter };
  } finally {
    if (previous !== undefined && previous !== name) await tf.setBackend(previous);
  }
}

/**
 * On webgpu, why the device was lost (`GPUDevice.lost`'s reason and message) when it was; undefined
 * on other backends and while the device lives (waits `waitMs` for the loss to be reported).
 */
export async function webgpuDeviceLoss(waitMs = 200): Promise<string | undefined> {
  if (tf.getBackend() !== 'webgpu') return undefined;
  const device = (tf.backend() as unknown as { device?: { lost?: Promise<{ reason?: string; message?: string }> } }).device;
  if (device?.lost === undefined) return undefined;
  const info = await Promise.race([device.lost, new Promise<undefined>((resolve) => setTimeout(resolve, waitMs, undefined))]);
  return info === undefined ? undefined : `the WebGPU device was lost (reason: ${info.reason ?? 'none given'}): ${info.message ?? ''}`;
}
