/// <reference types="vite/client" />
/**
 * Setup of the numerical core's tests in Chromium (vitest.webgl.config.ts): the webgl backend,
 * rendering to float32 textures (tfjs falls back to half floats where a device lacks them, and
 * these tests' float32 bounds would then not apply), checked before every test, and fast-check's
 * seed as in Node.
 */
import '@tensorflow/tfjs-backend-webgl';
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeEach, expect } from 'vitest';

if (!(await tf.setBackend('webgl'))) throw new Error('webgl-setup: the webgl backend failed to start in this Chromium');
await tf.ready();
if (!tf.env().getBool('WEBGL_RENDER_FLOAT32_ENABLED')) {
  throw new Error('webgl-setup: this WebGL renders to half-float textures only; the float32 tests cannot run on it');
}
const seed = String(import.meta.env.FC_SEED ?? 'random');
if (seed !== 'random' && !/^-?\d+$/.test(seed)) throw new Error(`webgl-setup: FC_SEED must be an integer or 'random', got '${seed}'`);
fc.configureGlobal(seed === 'random' ? {} : { seed: Number(seed) });
// Every test runs on webgl: a test that switched backends, or a second tfjs-core, would show here.
beforeEach(() => {
  expect(tf.getBackend()).toBe('webgl');
});
