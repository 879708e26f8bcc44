/**
 * The program of `src/mpi.test.ts` (bundled first): trains a 784-128-64-10 MLP on Fashion-MNIST
 * with MKOR (default options) and writes what it ends with to `<output folder>/<name>.json`.
 *
 *     node rank-program.js <mode> <output folder> <backend> <addon path>
 *
 * - `single`: one process, the full batch of `BATCH` images a step, `optimizer.minimize`.
 * - `parallel` (under `mpirun -np N`): every rank builds the model from its own seed,
 *   `syncWeights()` makes rank 0's the common start, then each rank trains on its `BATCH / N`
 *   rows of every batch through a `DataParallelTrainer` over `MpiTransport`.
 * - `failing` (under `mpirun`): as `parallel` with a 5 s collective timeout, but rank 2's loss
 *   throws on step 1; rank 2 records its error and closes its transport (its `MPI_Finalize` waits
 *   for the others), the others record what their step rejected with.
 *
 * - `carry-on` (under `mpirun`): as `failing`, but rank 2 catches its step-1 error and carries on
 *   to step 2, which its trainer refuses; it then records that error and closes its transport.
 *
 * The folder's unique name also tags the command line, so the test can find leftover processes.
 */
// The @tensorflow/tfjs bundle registers the gradients (and the cpu backend) under plain Node.
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { loadFashionMnist } from '@mkor/datasets';
import { MkorOptimizer } from '@mkor/mkor';
import { MpiTransport } from '@mkor/mpi';
import * as tf from '@tensorflow/tfjs-core';

import { DataParallelTrainer } from '../src/index';
import { FAILING_TIMEOUT_MS, crossEntropy, mlp, rowsOf, trainableVariables, weightsOf } from './fixtures';

/** The full batch, the steps and the hidden layers of the run. */
export const BATCH = 128;
export const STEPS = 10;
export const HIDDEN = [128, 64] as const;
/** The seed of rank 0 (and of the single process); rank r starts from seed + 10·r before the sync. */
export const SEED = 41;

/** What every run writes: the losses it saw and its final weights, as float32 arrays. */
export interface RunReport {
  readonly rank: number;
  readonly worldSize: number;
  readonly losses: number[];
  readonly weights: number[][];
  /** The initial weights (single process only). */
  readonly origin?: number[][];
  readonly startedEqual?: boolean;
  readonly error?: { readonly name: string; readonly message: string; readonly elapsedMs: number };
}

async function main(): Promise<void> {
  const [mode, outputFolder, backend, addonPath] = process.argv.slice(2) as [string, string, string, string];
  await tf.setBackend(backend);
  await tf.ready();
  const data = loadFashionMnist({ trainLimit: BATCH * STEPS, testLimit: 1 });
  const write = (name: string, report: RunReport): void => writeFileSync(join(outputFolder, `${name}.json`), JSON.stringify(report));

  if (mode === 'single') {
    const model = mlp(SEED, HIDDEN);
    const optimizer = new MkorOptimizer(model);
    const origin = weightsOf(model).map((w) => Array.from(w));
    const losses: number[] = [];
    for (let step = 0; step < STEPS; step++) {
      const batch = rowsOf(data.train, step * BATCH, BATCH);
      const loss = optimizer.minimize(crossEntropy(model, batch), true) as tf.Scalar;
      losses.push((await loss.data())[0] as number);
      tf.dispose([loss, batch.x, batch.y]);
    }
    write('single', { rank: 0, worldSize: 1, losses, origin, weights: weightsOf(model).map((w) => Array.from(w)) });
    return;
  }

  const transport = await MpiTransport.create({ addonPath, timeoutMs: 30_000 });
  const { rank, worldSize } = transport;
  const model = mlp(SEED + 10 * rank, HIDDEN);
  const optimizer = new MkorOptimizer(model);
  const failing = mode === 'failing' || mode === 'carry-on';
  const timeout = failing ? { timeoutMs: FAILING_TIMEOUT_MS } : {};
  const trainer = new DataParallelTrainer({ optimizer, transport, variables: trainableVariables(model), ...timeout });
  await trainer.syncWeights();
  const start = weightsOf(model);
  const startedEqual = weightsOf(mlp(SEED, HIDDEN)).every((w, i) => w.every((x, j) => x === (start[i] as Float32Array)[j]));
  const shard = BATCH / worldSize;
  const losses: number[] = [];
  let started = performance.now();
  try {
    for (let step = 0; step < STEPS; step++) {
      const batch = rowsOf(data.train, step * BATCH + rank * shard, shard);
      const loss = crossEntropy(model, batch);
      started = performance.now();
      try {
        losses.push(
          await trainer.step(() => {
            if (failing && rank === 2 && step === 1) throw new Error('rank 2 failed in its forward pass');
            return loss();
          }),
        );
      } catch (error) {
        if (!(mode === 'carry-on' && rank === 2 && step === 1)) throw error;
      } finally {
        tf.dispose([batch.x, batch.y]);
      }
    }
  } catch (error) {
    const { name, message } = error as Error;
    write(`rank-${rank}`, { rank, worldSize, losses, weights: [], error: { name, message, elapsedMs: performance.now() - started } });
    await transport.close();
    return;
  }
  write(`rank-${rank}`, { rank, worldSize, losses, startedEqual, weights: weightsOf(model).map((w) => Array.from(w)) });
  await transport.close();
}

await main();
