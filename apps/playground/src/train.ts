/**
 * Training side by side: every chosen optimizer trains its own copy of the model (same seed, so the
 * same initial weights) on the same batches, one step each in turn, so all curves grow together.
 * Each step is timed from the call to `minimize` until its loss is on the host (which waits for
 * the device: on webgl and webgpu that is where the queued work is paid for), and split with the
 * second-order optimizers' `metrics` into factor refresh, preconditioning and the rest (forward,
 * backward, the first-order update and the loss read-back). MKOR's runs also record the spectra of
 * one layer's inverse factors every few steps (read after the round of steps, outside the timing).
 */
import * as tf from '@tensorflow/tfjs';

import { MkorOptimizer } from '@mkor/mkor';

import { type FactorSpectra, readFactorSpectra } from './factors';
import { type ModelChoice, buildModel } from './model';
import { type OptimizerName, type SwitchChoice, createOptimizer, isSecondOrder } from './optimizers';

/** Labelled images in host memory: `count × 784` pixels in [0, 1] and `count` labels in 0…9. */
export interface LabelledImages {
  readonly images: Float32Array;
  readonly labels: Uint8Array;
  readonly count: number;
}

/** The second-order layer (0-based, in capture order) whose factor spectra MKOR's runs record: the MLP's second hidden layer, the CNN's second convolution. */
export const SPECTRUM_LAYER = 1;

/** What one run trains: the model (MLP or CNN, its width and seed), the optimizers and the steps. */
export interface TrainingSettings extends ModelChoice {
  readonly optimizers: readonly OptimizerName[];
  readonly learningRates: Readonly<Record<OptimizerName, number>>;
  readonly switchChoice: SwitchChoice;
  readonly steps: number;
  readonly batchSize: number;
  /** Return each model's weights after the last step (for comparisons). */
  readonly keepWeights?: boolean;
  /** Record the factor spectra of MKOR's runs every this many steps and after the last (0 or absent: never). */
  readonly spectrumEvery?: number;
}

/** One step of one optimizer. */
export interface StepRecord {
  readonly step: number;
  readonly loss: number;
  /** Milliseconds from `minimize` to the loss on the host. */
  readonly stepMs: number;
  /** The optimizer's `metrics.factorMs` (0 for Adam, and for a second-order step without metrics). */
  readonly factorMs: number;
  /** The optimizer's `metrics.preconditionMs` (as `factorMs`). */
  readonly preconditionMs: number;
  /** Seconds of this optimizer's steps so far, this one included. */
  readonly seconds: number;
}

/** One optimizer's run. */
export interface OptimizerRun {
  readonly name: OptimizerName;
  readonly records: StepRecord[];
  /** `switchedAtStep` of MKOR-H (−1 before a switch, and for the others). */
  switchedAtStep: number;
  /** The weights after the last step, in `model.getWeights()` order (with `keepWeights`). */
  weights?: number[][];
  /** MKOR's and MKOR-H's factor spectra of layer {@link SPECTRUM_LAYER}, oldest first (with `spectrumEvery`). */
  readonly spectra: FactorSpectra[];
}

/** Called after every round of steps with the runs so far (for live plots). */
export type ProgressListener = (runs: readonly OptimizerRun[]) => void | Promise<void>;

function checkSettings(settings: TrainingSettings, data: LabelledImages): void {
  const positive = (name: string, value: number) => {
    if (!(Number.isInteger(value) && value > 0)) throw new RangeError(`trainSideBySide: ${name} must be a positive integer, got ${value}`);
  };
  positive('steps', settings.steps);
  positive('batchSize', settings.batchSize);
  const every = settings.spectrumEvery ?? 0;
  if (!(Number.isInteger(every) && every >= 0)) throw new RangeError(`trainSideBySide: spectrumEvery must be a non-negative integer, got ${every}`);
  if (settings.batchSize > data.count) throw new RangeError(`trainSideBySide: batchSize ${settings.batchSize} is more than the ${data.count} images loaded`);
  if (settings.optimizers.length === 0) throw new RangeError('trainSideBySide: optimizers is empty; choose at least one');
}

/**
 * The batch of step `step`: images `[step·b, (step+1)·b)` of the data, wrapping around its end,
 * as `[b, 784]` pixels and `[b, 10]` one-hot labels.
 */
export function batchOf(data: LabelledImages, step: number, batchSize: number): { x: tf.Tensor2D; y: tf.Tensor2D } {
  const rows = Array.from({ length: batchSize }, (_, i) => (step * batchSize + i) % data.count);
  const pixels = new Float32Array(batchSize * 784);
  rows.forEach((row, i) => pixels.set(data.images.subarray(row * 784, (row + 1) * 784), i * 784));
  const labels = Int32Array.from(rows, (row) => data.labels[row] as number);
  return tf.tidy(() => ({
    x: tf.tensor2d(pixels, [batchSize, 784]),
    y: tf.cast(tf.oneHot(tf.tensor1d(labels, 'int32'), 10), 'float32') as tf.Tensor2D,
  }));
}

/**
 * Trains every optimizer of `settings` for `settings.steps` steps on the current tfjs backend and
 * returns their runs. Everything it creates (models, optimizers, batches) is disposed before it
 * returns, also when an optimizer refuses to be built or a step throws.
 */
export async function trainSideBySide(data: LabelledImages, settings: TrainingSettings, onProgress?: ProgressListener): Promise<OptimizerRun[]> {
  checkSettings(settings, data);
  const every = settings.spectrumEvery ?? 0;
  const trainees: { name: OptimizerName; model: tf.Sequential; optimizer: tf.Optimizer }[] = [];
  try {
    for (const name of settings.optimizers) {
      const model = buildModel(settings);
      try {
        trainees.push({ name, model, optimizer: createOptimizer(name, model, settings.learningRates[name], settings.switchChoice, tf.getBackend()) });
      } catch (error) {
        // An optimizer that refuses (a bad learning rate, half-float textures) leaves no model behind.
        model.dispose();
        throw error;
      }
    }
    const runs: OptimizerRun[] = trainees.map(({ name }) => ({ name, records: [], switchedAtStep: -1, spectra: [] }));
    for (let step = 0; step < settings.steps; step++) {
      const { x, y } = batchOf(data, step, settings.batchSize);
      try {
        for (const [index, { model, optimizer }] of trainees.entries()) {
          const run = runs[index] as OptimizerRun;
          const start = performance.now();
          const lossOf = () => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar;
          // minimizeAsync: MKOR-H's switch gets the loss with no synchronous read-back (webgpu).
          const loss = isSecondOrder(optimizer) ? await optimizer.minimizeAsync(lossOf, true) : optimizer.minimize(lossOf, true);
          if (loss === null) throw new Error(`trainSideBySide: ${run.name} returned no loss at step ${step}`);
          const value = (await loss.data())[0] as number;
          loss.dispose();
          const stepMs = performance.now() - start;
          const metrics = isSecondOrder(optimizer) ? optimizer.metrics : null;
          const seconds = (run.records.at(-1)?.seconds ?? 0) + stepMs / 1000;
          run.records.push({ step, loss: value, stepMs, factorMs: metrics?.factorMs ?? 0, preconditionMs: metrics?.preconditionMs ?? 0, seconds });
          if (isSecondOrder(optimizer)) run.switchedAtStep = optimizer.switchedAtStep;
        }
      } finally {
        tf.dispose([x, y]);
      }
      const taken = step + 1;
      if (every > 0 && (taken % every === 0 || taken === settings.steps)) {
        for (const [index, { optimizer }] of trainees.entries()) {
          if (optimizer instanceof MkorOptimizer) (runs[index] as OptimizerRun).spectra.push(await readFactorSpectra(optimizer, SPECTRUM_LAYER, taken));
        }
      }
      await onProgress?.(runs);
    }
    if (settings.keepWeights) {
      for (const [index, { model }] of trainees.entries()) {
        (runs[index] as OptimizerRun).weights = await Promise.all(model.getWeights().map(async (weight) => Array.from(await weight.data())));
      }
    }
    return runs;
  } finally {
    for (const { model, optimizer } of trainees) {
      optimizer.dispose();
      model.dispose();
    }
  }
}
