/**
 * The TensorFlow.js backends the page can train on: webgl and cpu (from `@tensorflow/tfjs`), wasm
 * (its binaries bundled by Vite and located with `setWasmPaths`) and webgpu (registered only where
 * the browser has `navigator.gpu`).
 */
import '@tensorflow/tfjs-backend-webgpu';

import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import plainWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import simdWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import threadedSimdWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';

import { BACKEND_NAMES, type BackendName } from './api';

setWasmPaths({
  'tfjs-backend-wasm.wasm': plainWasm,
  'tfjs-backend-wasm-simd.wasm': simdWasm,
  'tfjs-backend-wasm-threaded-simd.wasm': threadedSimdWasm,
});

/** Makes `name` the current backend; throws, naming it, when it cannot start in this browser. */
export async function useBackend(name: BackendName): Promise<void> {
  if (!BACKEND_NAMES.includes(name)) throw new Error(`useBackend: unknown backend '${String(name)}' (expected one of ${BACKEND_NAMES.join(', ')})`);
  if (!(await tf.setBackend(name))) throw new Error(`useBackend: the ${name} backend could not start in this browser`);
  await tf.ready();
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
  if (name === 'wasm') return `WebAssembly (${typeof SharedArrayBuffer === 'undefined' ? 'one thread' : 'threads allowed'})`;
  return 'JavaScript on the main thread';
}
