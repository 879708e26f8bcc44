/**
 * Test setup: selects the TensorFlow.js backend named by MKOR_TEST_BACKEND (`wasm` by default,
 * or `cpu`) before any test runs, and gives fast-check the seed in FC_SEED (see vitest.config.ts).
 */
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
// tfjs-core alone registers no gradients; the @tensorflow/tfjs bundle does this import.
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';

const backend = process.env.MKOR_TEST_BACKEND ?? 'wasm';
if (backend !== 'wasm' && backend !== 'cpu') {
  throw new Error(`MKOR_TEST_BACKEND must be 'wasm' or 'cpu', got '${backend}'`);
}
if (!(await tf.setBackend(backend))) {
  throw new Error(`the ${backend} backend failed to initialise`);
}
await tf.ready();

// FC_SEED: an integer (vitest.config.ts derives one from the commit) or 'random'.
const seed = process.env.FC_SEED ?? 'random';
if (seed !== 'random' && !/^-?\d+$/.test(seed)) {
  throw new Error(`FC_SEED must be an integer or 'random', got '${seed}'`);
}
fc.configureGlobal(seed === 'random' ? {} : { seed: Number(seed) });
