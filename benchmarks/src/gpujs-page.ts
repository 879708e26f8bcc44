/// <reference lib="dom" />
/// <reference types="vite/client" />
/**
 * The Chromium page of benchmark `gpujs` (`gpujs.ts` serves it with Vite and drives it with
 * playwright-core): the same problems (`gpujs-problems.ts`) computed with gpu.js in WebGL 2 and
 * with tfjs on its webgl and wasm backends (tfjs-backend-wasm as shipped, without
 * `@mkor/wasm-kernels`; threaded where the page is cross-origin isolated), timed in the page. Exposes `gpujsBenchmark(request)`
 * and `gpujsRenderer` on `globalThis`.
 */
import '@tensorflow/tfjs-backend-webgl';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import plainWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import simdWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import threadedSimdWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';
import { createMkorKernels } from '@mkor/gpujs-kernels';
import * as tf from '@tensorflow/tfjs-core';

import { type PreparedProblem, type Problem, operations, prepareGpujs, prepareTfjs } from './gpujs-problems';

setWasmPaths({ 'tfjs-backend-wasm.wasm': plainWasm, 'tfjs-backend-wasm-simd.wasm': simdWasm, 'tfjs-backend-wasm-threaded-simd.wasm': threadedSimdWasm });

/** What Node asks for: one problem, by index, and the implementations to leave out. */
export interface BrowserRequest {
  readonly operation: number;
  readonly problem: number;
  readonly smoke: boolean;
  readonly skip: readonly string[];
}

/** One implementation's outcome: median ms (undefined when skipped) and its results as base64 float32 bytes. */
export interface BrowserResult {
  readonly name: string;
  readonly ms?: number;
  readonly results: readonly string[];
}

const kernels = createMkorKernels({ mode: 'webgl2' });

function base64(values: Float32Array): string {
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

/** Median ms of `repeats` timed calls after `warmup` untimed ones. */
function median(run: () => void, smoke: boolean): number {
  const start = performance.now();
  run();
  const once = performance.now() - start;
  const { warmup, repeats } = smoke ? { warmup: 0, repeats: 2 } : once > 500 ? { warmup: 0, repeats: 3 } : { warmup: 1, repeats: 7 };
  for (let i = 0; i < warmup; i++) run();
  const samples: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const begin = performance.now();
    run();
    samples.push(performance.now() - begin);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)] as number;
}

/** One implementation on the problem: median ms and its results. */
function timed(name: string, prepared: PreparedProblem, smoke: boolean): BrowserResult {
  const ms = median(prepared.run, smoke);
  const results = prepared.results().map(base64);
  prepared.dispose();
  return { name, ms, results };
}

async function tfjs(backend: 'webgl' | 'wasm', problem: Problem, smoke: boolean): Promise<BrowserResult> {
  if (!(await tf.setBackend(backend))) throw new Error(`the ${backend} backend failed to start`);
  await tf.ready();
  if (backend === 'webgl' && !tf.env().getBool('WEBGL_RENDER_FLOAT32_ENABLED')) throw new Error('webgl renders to half floats only here');
  return timed(`Chromium tfjs ${backend}`, prepareTfjs(problem), smoke);
}

async function gpujsBenchmark(request: BrowserRequest): Promise<BrowserResult[]> {
  const spec = operations(request.smoke)[request.operation]?.problems[request.problem];
  if (spec === undefined) throw new Error(`gpujsBenchmark: no problem ${request.operation}/${request.problem}`);
  const problem = spec.build();
  const outcome: BrowserResult[] = [];
  const names = ['Chromium gpu.js webgl2', 'Chromium tfjs webgl', 'Chromium tfjs wasm'];
  for (const name of names) {
    if (request.skip.includes(name)) {
      outcome.push({ name, results: [] });
      continue;
    }
    outcome.push(name.includes('gpu.js') ? timed(`Chromium gpu.js ${kernels.mode}`, prepareGpujs(kernels, problem), request.smoke) : await tfjs(name.endsWith('webgl') ? 'webgl' : 'wasm', problem, request.smoke));
  }
  return outcome;
}

const gl = document.createElement('canvas').getContext('webgl2');
const info = gl?.getExtension('WEBGL_debug_renderer_info');
Object.assign(globalThis, {
  gpujsBenchmark,
  gpujsRenderer: `WebGL 2 renderer ${info && gl ? String(gl.getParameter(info.UNMASKED_RENDERER_WEBGL)) : 'unknown'}; tfjs wasm as shipped, ${globalThis.crossOriginIsolated ? 'cross-origin isolated (threads available)' : 'not isolated (no threads)'}`,
});
