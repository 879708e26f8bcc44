/**
 * A page for test/browser/fused-threads.test.ts: served cross-origin isolated, so
 * tfjs-backend-wasm loads its threaded build (a shared memory it imports rather than exports).
 * `window.compareFusedKernels()` runs the same computations with `@mkor/wasm-kernels`' fused
 * kernels registered and without them, and returns what the test checks.
 */
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import plainWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import simdWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import threadedSimdWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';
import { finiteFlag, hasFusedKernel } from '@mkor/core';
import { adam } from '@mkor/first-order';
import { frobeniusNorm } from '@mkor/grad-rescale';
import { MkorOptimizer } from '@mkor/mkor';
import { registerWasmKernels } from '@mkor/wasm-kernels';

setWasmPaths({ 'tfjs-backend-wasm.wasm': plainWasm, 'tfjs-backend-wasm-simd.wasm': simdWasm, 'tfjs-backend-wasm-threaded-simd.wasm': threadedSimdWasm });

/** What one pass (fused or not) computed. */
export interface PassResult {
  readonly fused: boolean;
  readonly flags: number[];
  readonly norm: number;
  readonly normAfterGrowth: number;
  readonly weights: number[];
  readonly losses: number[];
  readonly leakedTensors: number;
}

/** What the test reads. */
export interface FusedPageReport {
  readonly crossOriginIsolated: boolean;
  readonly sharedMemory: boolean;
  readonly passes: PassResult[];
}

function run(fused: boolean): PassResult {
  registerWasmKernels({ fused });
  const before = tf.memory().numTensors;
  const good = tf.tensor1d([3, 4, 0, 0, 0]);
  const poisoned = tf.tensor1d([1, 2, 3, 4, Number.NaN]);
  const flags = [finiteFlag([good]), finiteFlag([good, poisoned])].map((f) => {
    const value = f.dataSync()[0] as number;
    f.dispose();
    return value;
  });
  const read = (t: tf.Tensor) => {
    const value = t.dataSync()[0] as number;
    t.dispose();
    return value;
  };
  const norm = read(frobeniusNorm(good));
  // 64 MiB more: the memory grows, and a shared memory's buffer is replaced.
  const big = tf.zeros([4096, 4096]);
  const normAfterGrowth = read(frobeniusNorm(good));
  big.dispose();
  const model = tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [8], units: 16, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }),
      tf.layers.dense({ units: 3, kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }),
    ],
  });
  const x = tf.randomNormal([64, 8], 0, 1, 'float32', 3);
  const y = tf.randomNormal([64, 3], 0, 1, 'float32', 4);
  const optimizer = new MkorOptimizer(model, { backend: adam({ learningRate: 0.01 }), factorUpdateInterval: 2, factors: 'dense' });
  const losses: number[] = [];
  for (let step = 0; step < 12; step++) {
    losses.push(read(optimizer.minimize(() => tf.losses.meanSquaredError(y, model.apply(x) as tf.Tensor) as tf.Scalar, true) as tf.Scalar));
  }
  const weights = model.getWeights().flatMap((w) => Array.from(w.dataSync()));
  optimizer.dispose();
  model.dispose();
  tf.dispose([good, poisoned, x, y]);
  return { fused: hasFusedKernel('finiteFlag'), flags, norm, normAfterGrowth, weights, losses, leakedTensors: tf.memory().numTensors - before };
}

(globalThis as unknown as { compareFusedKernels: () => Promise<FusedPageReport> }).compareFusedKernels = async () => {
  registerWasmKernels();
  if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not start');
  await tf.ready();
  const memory = (tf.backend() as unknown as { wasm: { wasmMemory?: { buffer: unknown } } }).wasm.wasmMemory;
  return {
    crossOriginIsolated: (globalThis as unknown as { crossOriginIsolated: boolean }).crossOriginIsolated,
    sharedMemory: typeof SharedArrayBuffer !== 'undefined' && memory?.buffer instanceof SharedArrayBuffer,
    passes: [run(true), run(false)],
  };
};
