/**
 * Saved models and checkpoints, as users store them: a model saved with `includeOptimizer: true`
 * through tfjs's own `model.save` / `tf.loadLayersModel` (an in-memory handler, the shape of the
 * file and IndexedDB handlers) loads, and after `optimizer.attach(model)` training continues
 * exactly as an uninterrupted run — for MKOR, KFAC and Eva, at every step offset modulo the
 * refresh interval (the first refresh after a resume used to be taken as stale). Corrupted and
 * mismatched checkpoints are refused before anything is touched.
 */
import type { CaptureOptimizer } from '@mkor/capture';
import { EvaOptimizer } from '@mkor/eva';
import { sgd } from '@mkor/first-order';
import { KfacOptimizer } from '@mkor/kfac';
import { MkorOptimizer } from '@mkor/mkor';
import type { SecondOrderOptimizer } from '@mkor/second-order';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';

import { fashionRows, mlp } from './fixtures';

const train = fashionRows(256);

const INTERVAL = 3;
const STEPS = 8;
const BATCH = 32;

const methods: [string, (model: tfl.LayersModel) => SecondOrderOptimizer][] = [
  ['MKOR', (model) => new MkorOptimizer(model, { backend: sgd({ learningRate: 0.05, momentum: 0.9 }), factorUpdateInterval: INTERVAL })],
  ['KFAC', (model) => new KfacOptimizer(model, { learningRate: 1e-2, factorUpdateInterval: INTERVAL, inverseInterval: INTERVAL })],
  ['Eva', (model) => new EvaOptimizer(model, { learningRate: 1e-2 })],
];

/** `steps` batches of model.fit, batch i being rows [i·BATCH, (i+1)·BATCH) from `from` on. */
async function fitSteps(model: tfl.LayersModel, from: number, steps: number): Promise<void> {
  const x = tf.slice(train.x, [from * BATCH, 0], [steps * BATCH, 784]);
  const y = tf.slice(train.y, [from * BATCH, 0], [steps * BATCH, 10]);
  await model.fit(x, y, { epochs: 1, batchSize: BATCH, shuffle: false, verbose: 0 });
  tf.dispose([x, y]);
}

async function saveToMemory(model: tfl.LayersModel): Promise<tf.io.ModelArtifacts> {
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
    { includeOptimizer: true },
  );
  return saved as tf.io.ModelArtifacts;
}

describe('model.save with includeOptimizer, tf.loadLayersModel, attach, continue', () => {
  for (const [method, create] of methods) {
    it(`${method}: continues exactly after a save at every step offset modulo the refresh interval`, async () => {
      const straight = mlp(16, 31, 'softmax');
      straight.compile({ optimizer: create(straight), loss: 'categoricalCrossentropy' });
      await fitSteps(straight, 0, STEPS);
      const expected = straight.getWeights().map((w) => Array.from(w.dataSync()));
      (straight.optimizer as CaptureOptimizer<unknown>).dispose();
      straight.dispose();

      for (let saveAfter = 1; saveAfter <= INTERVAL + 1; saveAfter++) {
        const first = mlp(16, 31, 'softmax');
        first.compile({ optimizer: create(first), loss: 'categoricalCrossentropy' });
        await fitSteps(first, 0, saveAfter);
        const artifacts = await saveToMemory(first);
        (first.optimizer as CaptureOptimizer<unknown>).dispose();
        first.dispose();

        // A new process: nothing of the first model or optimizer is left.
        const before = tf.memory().numTensors;
        const loaded = await tfl.loadLayersModel(tf.io.fromMemory(artifacts));
        const optimizer = loaded.optimizer as CaptureOptimizer<unknown>;
        expect(optimizer.getClassName()).toBe(method === 'MKOR' ? 'MkorOptimizer' : `${method[0]}${method.slice(1).toLowerCase()}Optimizer`);
        optimizer.attach(loaded);
        await fitSteps(loaded, saveAfter, STEPS - saveAfter);
        expect(loaded.getWeights().map((w) => Array.from(w.dataSync())), `${method}, saved after step ${saveAfter}`).toEqual(expected);
        optimizer.dispose();
        loaded.dispose();
        expect(tf.memory().numTensors, `${method}, saved after step ${saveAfter}: tensors`).toBeLessThanOrEqual(before);
      }
    });
  }
});

describe('corrupted and mismatched checkpoints', () => {
  it('are refused with a clear error before anything is touched', async () => {
    const model = mlp(16, 31, 'softmax');
    const optimizer = new MkorOptimizer(model, { factorUpdateInterval: 2 });
    model.compile({ optimizer, loss: 'categoricalCrossentropy' });
    await fitSteps(model, 0, 3);
    const weights = await optimizer.getWeights();
    const saved = weights.map((w) => ({ name: w.name, tensor: tf.clone(w.tensor) }));
    const state = optimizer.currentState;
    const firstMoment = saved.find((w) => w.tensor.rank >= 1 && w.name.includes('/1/'));
    expect(firstMoment).toBeDefined();
    const poisoned = {
      nan: tf.fill(firstMoment!.tensor.shape, Number.NaN),
      int: tf.zeros(firstMoment!.tensor.shape, 'int32'),
    };
    const replace = (tensor: tf.Tensor) => saved.map((w) => (w === firstMoment ? { name: w.name, tensor } : w));
    await expect(optimizer.setWeights(replace(poisoned.nan))).rejects.toThrow(/MkorOptimizer.setWeights: checkpoint entry '.*' holds NaN or Inf/);
    await expect(optimizer.setWeights(replace(poisoned.int))).rejects.toThrow(/is int32, expected float32/);
    await expect(optimizer.setWeights([])).rejects.toThrow(/the checkpoint is empty/);
    const reference = new MkorOptimizer(mlp(16, 31, 'softmax'), { preset: 'reference' });
    await expect(reference.setWeights(saved)).rejects.toThrow(/configured differently \(preset: "default" in the checkpoint, "reference" here/);
    reference.dispose();
    expect(optimizer.currentState).toBe(state);
    optimizer.dispose();
    tf.dispose([...saved.map((w) => w.tensor), ...Object.values(poisoned)]);
    model.dispose();
  });
});
