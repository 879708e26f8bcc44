import { loadFashionMnist } from '@mkor/datasets';
import { registerWasmKernels, unregisterWasmKernels } from '@mkor/wasm-kernels';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { buildModel } from './model';
import { DEFAULT_LEARNING_RATES, createOptimizer } from './optimizers';
import { type TrainingSettings, trainSideBySide } from './train';

const data = loadFashionMnist({ trainLimit: 1024, testLimit: 1 }).train;
const cnn: TrainingSettings = {
  model: 'CNN',
  hidden: 0,
  seed: 1,
  optimizers: ['MKOR', 'Adam'],
  learningRates: DEFAULT_LEARNING_RATES,
  switchChoice: { kind: 'loss-rate' },
  steps: 16,
  batchSize: 64,
  spectrumEvery: 8,
};

describe('trainSideBySide', () => {
  // tfjs-backend-wasm 4.22 has no Conv2DBackpropFilter: the CNN trains on wasm with @mkor/wasm-kernels only.
  beforeAll(() => {
    if (tf.getBackend() === 'wasm') registerWasmKernels();
  });
  afterAll(() => unregisterWasmKernels());

  it('trains the CNN with MKOR and Adam: both losses fall, MKOR records positive factor spectra, no tensor is left', async () => {
    const before = tf.memory().numTensors;
    const runs = await trainSideBySide(data, cnn);
    expect(tf.memory().numTensors).toBe(before);
    for (const run of runs) {
      const losses = run.records.map((record) => record.loss);
      expect(losses).toHaveLength(cnn.steps);
      const mean = (values: number[]) => values.reduce((sum, value) => sum + value, 0) / values.length;
      expect(mean(losses.slice(-4)), `${run.name}: ${losses.map((loss) => loss.toFixed(3)).join(' ')}`).toBeLessThan(0.8 * mean(losses.slice(0, 2)));
    }
    const [mkor, adam] = runs;
    expect(adam?.spectra).toEqual([]);
    expect(mkor?.spectra.map((reading) => reading.step)).toEqual([8, 16]);
    for (const reading of mkor?.spectra ?? []) {
      // The second convolution: 3·3·8 inputs + the bias, 16 outputs; inverse factors stay positive definite (Lemma 3.1).
      expect(reading.layer).toMatch(/conv2d/);
      expect(reading.input).toHaveLength(73);
      expect(reading.output).toHaveLength(16);
      expect([...reading.input, ...reading.output].every((value) => Number.isFinite(value) && value > 0)).toBe(true);
    }
  });

  it("reads the MLP's second hidden layer with its input factor in low-rank form (161 > 4 × the window of 32)", async () => {
    const before = tf.memory().numTensors;
    const [mkor] = await trainSideBySide(data, { ...cnn, model: 'MLP', hidden: 160, optimizers: ['MKOR'], steps: 3, spectrumEvery: 3 });
    expect(tf.memory().numTensors).toBe(before);
    const reading = mkor?.spectra[0];
    expect(reading?.layer).toMatch(/dense/);
    expect(reading?.input).toHaveLength(161);
    expect(reading?.output).toHaveLength(160);
    expect([...(reading?.input ?? []), ...(reading?.output ?? [])].every((value) => Number.isFinite(value) && value > 0)).toBe(true);
    // Low-rank form: at most 32 of R⁻¹'s eigenvalues differ from c, the multiple of I (so c is the median).
    const input = reading?.input ?? [];
    const flat = input[80] as number;
    expect(input.filter((value) => Math.abs(value - flat) > 1e-9 * Math.abs(flat)).length).toBeLessThanOrEqual(32);
  });

  it('refuses KFAC on webgpu, which must read back synchronously', () => {
    const model = buildModel(cnn);
    const before = tf.memory().numTensors;
    expect(() => createOptimizer('KFAC', model, 0.01, { kind: 'loss-rate' }, 'webgpu')).toThrow(/createOptimizer: KFAC is not offered on webgpu/);
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });

  it('leaves no model behind when an optimizer refuses to be built', async () => {
    const before = tf.memory().numTensors;
    await expect(trainSideBySide(data, { ...cnn, learningRates: { ...DEFAULT_LEARNING_RATES, Adam: -1 } })).rejects.toThrow(/createOptimizer: learningRate of Adam must be a positive number, got -1/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses a bad spectrumEvery, naming it', async () => {
    await expect(trainSideBySide(data, { ...cnn, spectrumEvery: 1.5 })).rejects.toThrow(/trainSideBySide: spectrumEvery must be a non-negative integer, got 1.5/);
  });
});
