/**
 * The measurement behind the default Sherman–Morrison form: trains the same Fashion-MNIST MLP
 * with each form (and the authors' reference preset), Adam as the backend, on the same budget and
 * seeds, and prints a markdown table of final training loss and test accuracy (mean ± spread).
 *
 *   npm run choose-form -w @mkor/examples -- --train 20000 --epochs 2 --seeds 2 [--engine wasm]
 */
import '@tensorflow/tfjs';

import { parseArgs } from 'node:util';

import { loadFashionMnist, splitToTensors } from '@mkor/datasets';
import { type EngineName, useEngine } from '@mkor/engine';
import { adam } from '@mkor/first-order';
import { type MkorBlockOptions, MkorOptimizer } from '@mkor/mkor';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

const { values } = parseArgs({
  options: {
    epochs: { type: 'string', default: '2' },
    batch: { type: 'string', default: '256' },
    train: { type: 'string', default: '20000' },
    seeds: { type: 'string', default: '2' },
    'learning-rate': { type: 'string', default: '0.001' },
    engine: { type: 'string', default: 'auto' },
  },
});
const engine = await useEngine(values.engine as EngineName);
console.log(`engine: ${engine.engine} (${engine.reason})`);
const data = loadFashionMnist({ trainLimit: Number(values.train) });
const train = splitToTensors(data.train, { flatten: true });
const test = splitToTensors(data.test, { flatten: true });

const variants: [string, MkorBlockOptions][] = [
  ["form 'exact'", { form: 'exact' }],
  ["form 'paper'", { form: 'paper' }],
  ["form 'reference'", { form: 'reference' }],
  ["preset 'reference'", { preset: 'reference' }],
];

const rows: string[] = [];
for (const [name, options] of variants) {
  const losses: number[] = [];
  const accuracies: number[] = [];
  const seconds: number[] = [];
  for (let seed = 1; seed <= Number(values.seeds); seed++) {
    const model = tfl.sequential({
      layers: [
        tfl.layers.dense({ units: 256, activation: 'relu', inputShape: [784], kernelInitializer: tfl.initializers.glorotUniform({ seed: 10 * seed }) }),
        tfl.layers.dense({ units: 256, activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 10 * seed + 1 }) }),
        tfl.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: 10 * seed + 2 }) }),
      ],
    });
    const optimizer = new MkorOptimizer(model, { ...options, backend: adam({ learningRate: Number(values['learning-rate']) }) });
    model.compile({ optimizer, loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
    const start = performance.now();
    const history = await model.fit(train.x, train.y, { epochs: Number(values.epochs), batchSize: Number(values.batch), verbose: 0 });
    seconds.push((performance.now() - start) / 1000);
    losses.push((history.history.loss as number[]).at(-1) as number);
    const [, accuracy] = model.evaluate(test.x, test.y, { batchSize: 1000 }) as tf.Scalar[];
    accuracies.push(accuracy!.dataSync()[0] as number);
    console.log(`${name} seed ${seed}: loss ${losses.at(-1)!.toFixed(4)}, test accuracy ${(100 * accuracies.at(-1)!).toFixed(2)}%, events ${JSON.stringify(optimizer.totals.events)}`);
    optimizer.dispose();
    model.dispose();
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const spread = (xs: number[]) => (Math.max(...xs) - Math.min(...xs)) / 2;
  rows.push(
    `| ${name} | ${mean(losses).toFixed(4)} ± ${spread(losses).toFixed(4)} | ${(100 * mean(accuracies)).toFixed(2)}% ± ${(100 * spread(accuracies)).toFixed(2)} | ${mean(seconds).toFixed(1)} s |`,
  );
}
console.log(`\nFashion-MNIST MLP 784-256-256-10, ${data.train.count} images, ${values.epochs} epochs of batch ${values.batch}, Adam backend lr ${values['learning-rate']}, ${values.seeds} seeds (mean ± half range), engine ${engine.engine}\n`);
console.log('| variant | final train loss | test accuracy | wall time |');
console.log('| --- | --- | --- | --- |');
rows.forEach((r) => console.log(r));
tf.dispose([train.x, train.y, test.x, test.y]);
