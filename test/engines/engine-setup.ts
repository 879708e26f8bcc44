/**
 * Setup of the engine runs (vitest.engine.config.ts): after the repository's setup, switches
 * TensorFlow.js to the engine named by MKOR_ENGINE with `useEngine` — refusing a fallback to
 * another engine — and checks before every test that it is still the active backend.
 */
import { type EngineName, engineNames, useEngine } from '@mkor/engine';
import * as tf from '@tensorflow/tfjs-core';
import { beforeEach, expect } from 'vitest';

const requested = process.env.MKOR_ENGINE;
if (!engineNames.includes(requested as EngineName) || requested === 'auto') {
  throw new Error(`engine-setup: MKOR_ENGINE must be one of ${engineNames.filter((name) => name !== 'auto').join(', ')}, got '${String(requested)}'`);
}
const choice = await useEngine(requested as EngineName, { log: (line) => console.warn(line) });
if (choice.engine !== requested) throw new Error(`engine-setup: asked for '${requested}', useEngine chose '${choice.engine}' (${choice.reason})`);
console.log(`engine-setup: ${choice.engine} (tfjs backend '${choice.backend}'): ${choice.reason}`);

beforeEach(() => {
  expect(tf.getBackend()).toBe(choice.backend);
});
