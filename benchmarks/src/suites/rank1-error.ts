/**
 * Suite `rank1-error` (paper Fig. 5): the distribution of the rank-1 approximation error
 * `‖C − c cᵀ‖_F / ‖C‖_F` of the layer-input and output-gradient second moments, over the Dense
 * layers of the real models and over the steps of an MKOR training run.
 */
import { rank1ApproximationError } from '@mkor/rank1';
import * as tf from '@tensorflow/tfjs-core';

import { barChart, formatNumber, markdownTable, summarize } from '../lib';
import type { SuiteContext } from './context';
import type { OptimizerFactory } from './optimizers';
import { type Task, autoencoderTask, mlpTask } from './tasks';

const SIZES = {
  smoke: { steps: 4, every: 2 },
  modest: { steps: 200, every: 20 },
  full: { steps: 1000, every: 50 },
} as const;

interface Sample {
  readonly layer: string;
  readonly side: 'inputs' | 'output gradients';
  readonly step: number;
  readonly error: number;
}

/** Trains `task` with MKOR and measures the errors of every Dense layer every `every` steps (on the step's batch, before the step). */
function sampleErrors(task: Task, mkor: OptimizerFactory, steps: number, every: number, tick: () => void): Sample[] {
  const instance = task.create(1);
  const optimizer = mkor.create(instance.target, 1e-3);
  const samples: Sample[] = [];
  try {
    for (let step = 0; step < steps; step++) {
      if (step % every === 0 && instance.denseRows !== undefined) {
        tf.engine().startScope();
        try {
          for (const rows of instance.denseRows(step)) {
            samples.push({ layer: rows.layer, side: 'inputs', step, error: rank1ApproximationError(rows.inputs) });
            samples.push({ layer: rows.layer, side: 'output gradients', step, error: rank1ApproximationError(rows.outputGradients) });
          }
        } finally {
          tf.engine().endScope();
        }
      }
      optimizer.minimize(() => instance.loss(step), false, instance.variables);
      tick();
    }
  } finally {
    optimizer.dispose();
    instance.dispose();
  }
  return samples;
}

const BINS = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0000001];

export async function runRank1Error(context: SuiteContext): Promise<void> {
  const size = SIZES[context.size];
  const mkor = context.optimizers.find((f) => f.name === 'MKOR') as OptimizerFactory;
  const tasks = [mlpTask(context.taskSizes), autoencoderTask(context.taskSizes)];
  await context.useBackend('wasm');
  const bar = context.progress('rank1-error', tasks.length * size.steps);
  const sections: string[] = [];
  for (const task of tasks) {
    const samples = sampleErrors(task, mkor, size.steps, size.every, () => bar.tick(task.name));
    const groups = [...new Set(samples.map((s) => `${s.layer}\u0000${s.side}`))].map((key) => {
      const [layer, side] = key.split('\u0000') as [string, string];
      return { layer, side, errors: samples.filter((s) => s.layer === layer && s.side === side).map((s) => s.error) };
    });
    const table = markdownTable(
      ['layer', 'rows', 'samples', 'min', 'q1', 'median', 'q3', 'max', 'first → last step'],
      groups.map(({ layer, side, errors }) => {
        const s = summarize(errors);
        return [layer, side, String(s.count), formatNumber(s.min), formatNumber(s.q1), formatNumber(s.median), formatNumber(s.q3), formatNumber(s.max), `${formatNumber(errors[0] as number)} → ${formatNumber(errors.at(-1) as number)}`];
      }),
    );
    const histogram = (side: string): number[] => {
      const errors = samples.filter((s) => s.side === side).map((s) => s.error);
      return BINS.slice(0, -1).map((low, i) => errors.filter((e) => e >= low && e < (BINS[i + 1] as number)).length / Math.max(1, errors.length));
    };
    const plot = context.plot(
      `rank1-error-${task.name}`,
      barChart({
        title: `${task.name}: rank-1 approximation error over layers and steps`,
        yLabel: 'share of samples',
        categories: BINS.slice(0, -1).map((low) => `${low.toFixed(1)}–${(low + 0.1).toFixed(1)}`),
        series: [
          { name: 'layer inputs', values: histogram('inputs') },
          { name: 'output gradients', values: histogram('output gradients') },
        ],
      }),
    );
    const all = summarize(samples.map((s) => s.error));
    sections.push(`## ${task.name}\n\n${task.description}; MKOR (f = 10, Adam backend, lr 1e-3), seed 1, errors on the batch of every ${size.every}th step of ${size.steps}.\n\n${table}\n\nAll layers and steps: median ${formatNumber(all.median)}, interquartile range ${formatNumber(all.q1)}–${formatNumber(all.q3)}, max ${formatNumber(all.max)}.\n\n${plot}`);
  }
  bar.done();
  context.publish(
    'rank1-error',
    'rank1-error: how well one vector describes a layer’s second moment (paper Fig. 5)',
    `For each Dense layer, on the batch of a training step: the rows X are the layer's inputs (the
\`a\` side, no bias column) or the gradients of the loss with respect to its pre-activation outputs
(the \`g\` side), C = XᵀX/n their second moment, c their mean, and the error is
\`rank1ApproximationError(X)\` = ‖C − c cᵀ‖_F / ‖C‖_F of \`@mkor/rank1\` (0: one vector explains C
exactly; near 1: zero-mean rows). The rows come from a hand-written forward pass with the
layer's current weights and \`tf.grad\` for the output gradients. The CNN and transformer are
not measured here (conv2d rows are unfolded patches; the transformer's layers are not a
\`tf.Sequential\`).

${sections.join('\n\n')}
`,
  );
}
