/**
 * The main job: train the same MLP on Fashion-MNIST with `model.fit`, once with MKOR (Adam as its
 * first-order backend) and once with Adam alone, on the same budget (epochs, batch size, data,
 * initial weights), on the engine chosen by `--engine` (`@mkor/engine`; default `auto`, the
 * fastest available); print the engine and both results side by side.
 *
 *   npm run main                        # defaults below
 *   npm run main -- --epochs 3 --train 60000 --engine cpu
 */
// The @tensorflow/tfjs bundle registers the cpu backend, the layers API and the gradients.
import '@tensorflow/tfjs';

import { parseArgs } from 'node:util';

import { loadFashionMnist, splitToTensors } from '@mkor/datasets';
import { type EngineName, useEngine } from '@mkor/engine';
import { adam } from '@mkor/first-order';
import { MkorOptimizer } from '@mkor/mkor';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

const { values } = parseArgs({
  options: {
    epochs: { type: 'string', default: '2' },
    batch: { type: 'string', default: '256' },
    train: { type: 'string', default: '60000' },
    test: { type: 'string', default: '10000' },
    hidden: { type: 'string', default: '256' },
    'learning-rate': { type: 'string', default: '0.001' },
    engine: { type: 'string', default: 'auto' },
    seed: { type: 'string', default: '1' },
  },
});
const epochs = Number(values.epochs);
const batchSize = Number(values.batch);
const hidden = Number(values.hidden);
const learningRate = Number(values['learning-rate']);

const engine = await useEngine(values.engine as EngineName);
console.log(`engine: ${engine.engine} (${engine.reason})`);

const data = loadFashionMnist({ trainLimit: Number(values.train), testLimit: Number(values.test) });
const train = splitToTensors(data.train, { flatten: true });
const test = splitToTensors(data.test, { flatten: true });

/** The MLP: 784 → hidden (ReLU) → hidden (ReLU) → 10 (softmax), seeded initialisation. */
function buildModel(): tfl.Sequential {
  const seed = Number(values.seed);
  return tfl.sequential({
    layers: [
      tfl.layers.dense({ units: hidden, activation: 'relu', inputShape: [784], kernelInitializer: tfl.initializers.glorotUniform({ seed }) }),
      tfl.layers.dense({ units: hidden, activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + 1 }) }),
      tfl.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + 2 }) }),
    ],
  });
}

interface RunResult {
  name: string;
  losses: number[];
  testAccuracy: number;
  testLoss: number;
  seconds: number;
}

async function run(name: string, makeOptimizer: (model: tfl.Sequential) => tf.Optimizer): Promise<RunResult> {
  const model = buildModel();
  const optimizer = makeOptimizer(model);
  if (optimizer instanceof MkorOptimizer) console.log(optimizer.capture.describe());
  model.compile({ optimizer, loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  const losses: number[] = [];
  const start = performance.now();
  await model.fit(train.x, train.y, {
    epochs,
    batchSize,
    shuffle: true,
    verbose: 0,
    callbacks: {
      onEpochEnd: async (epoch, logs) => {
        losses.push(logs?.loss ?? Number.NaN);
        console.log(`${name.padEnd(5)} epoch ${epoch + 1}/${epochs}: loss ${(logs?.loss ?? Number.NaN).toFixed(4)} (${((performance.now() - start) / 1000).toFixed(1)} s)`);
      },
    },
  });
  const seconds = (performance.now() - start) / 1000;
  const [testLoss, testAccuracy] = (model.evaluate(test.x, test.y, { batchSize: 1000 }) as tf.Scalar[]).map((t) => {
    const v = t.dataSync()[0] as number;
    t.dispose();
    return v;
  }) as [number, number];
  optimizer.dispose();
  model.dispose();
  return { name, losses, testAccuracy, testLoss, seconds };
}

console.log(
  `Fashion-MNIST MLP 784-${hidden}-${hidden}-10, ${data.train.count} training / ${data.test.count} test images, ` +
    `${epochs} epochs of batch ${batchSize}, learning rate ${learningRate}, engine ${engine.engine} (backend ${tf.getBackend()})`,
);
const results = [
  await run('MKOR', (model) => new MkorOptimizer(model, { backend: adam({ learningRate }) })),
  await run('Adam', () => tf.train.adam(learningRate)),
];

console.log('\n| optimizer | final train loss | test loss | test accuracy | wall time |');
console.log('| --- | --- | --- | --- | --- |');
for (const r of results) {
  console.log(`| ${r.name} | ${r.losses.at(-1)?.toFixed(4)} | ${r.testLoss.toFixed(4)} | ${(100 * r.testAccuracy).toFixed(2)}% | ${r.seconds.toFixed(1)} s |`);
}
tf.dispose([train.x, train.y, test.x, test.y]);
