/**
 * Suite `cost-breakdown` (paper Fig. 3): milliseconds per training step split into forward +
 * backward, factor computation, preconditioning and the weight update, for every optimizer on
 * the same models; and MKOR's full step against LAMB's over batch sizes on the MLP.
 */
import { performance } from 'node:perf_hooks';

import type * as tf from '@tensorflow/tfjs-core';

import { barChart, formatNumber, lineChart, markdownTable, summarize } from '../lib';
import type { SuiteContext } from './context';
import { convergenceTasks } from './convergence';
import { DEFAULT_FACTOR_INTERVAL, type OptimizerFactory, stepCostMetrics } from './optimizers';
import { type Task, mlpTask } from './tasks';

/** Mean milliseconds per step of each part. */
interface StepCost {
  readonly forwardBackwardMs: number;
  readonly factorMs: number;
  readonly preconditionMs: number;
  readonly updateMs: number;
  readonly totalMs: number;
}

/**
 * Times `steps` training steps (after `warmup` untimed ones) of a fresh seed-1 instance. Forward
 * and backward are `computeGradients`; the optimizer step is `applyGradients`, of which the
 * optimizer's own metrics (`factorMs`, `preconditionMs`) are the factor and preconditioning
 * parts and the rest is the weight update (the backend optimizer, the rescale, the assignment).
 */
export function measureStepCost(task: Task, factory: OptimizerFactory, learningRate: number, warmup: number, steps: number, factorInterval = DEFAULT_FACTOR_INTERVAL): StepCost {
  const instance = task.create(1, { covariance: factory.needsCovariance });
  const optimizer = factory.create(instance.target, learningRate, { factorInterval });
  const totals = { forwardBackwardMs: 0, factorMs: 0, preconditionMs: 0, applyMs: 0 };
  try {
    for (let step = 0; step < warmup + steps; step++) {
      const start = performance.now();
      const { value, grads } = optimizer.computeGradients(() => instance.loss(step), instance.variables);
      value.dataSync();
      const middle = performance.now();
      optimizer.applyGradients(grads);
      // Reading the loss back after the step waits for the step's kernels (wasm and cpu run eagerly).
      const firstVariable = instance.variables[0] as tf.Variable;
      firstVariable.dataSync();
      const end = performance.now();
      value.dispose();
      for (const g of Object.values(grads)) g.dispose();
      if (step < warmup) continue;
      totals.forwardBackwardMs += middle - start;
      totals.applyMs += end - middle;
      const metrics = stepCostMetrics(optimizer);
      if (metrics !== null) {
        totals.factorMs += metrics.factorMs;
        totals.preconditionMs += metrics.preconditionMs;
      } else if (factory.secondOrder) {
        throw new Error(`${factory.name} does not report metrics.factorMs and metrics.preconditionMs`);
      }
    }
  } finally {
    optimizer.dispose();
    instance.dispose();
  }
  const perStep = (ms: number): number => ms / steps;
  return {
    forwardBackwardMs: perStep(totals.forwardBackwardMs),
    factorMs: perStep(totals.factorMs),
    preconditionMs: perStep(totals.preconditionMs),
    updateMs: perStep(totals.applyMs - totals.factorMs - totals.preconditionMs),
    totalMs: perStep(totals.forwardBackwardMs + totals.applyMs),
  };
}

const SIZES = {
  smoke: { warmup: 1, steps: 2, batches: [16, 64], repeats: 1 },
  modest: { warmup: 3, steps: 20, batches: [32, 128, 512, 2048, 4096], repeats: 2 },
  full: { warmup: 5, steps: 50, batches: [32, 64, 128, 256, 512, 1024, 2048, 4096], repeats: 3 },
} as const;

const LEARNING_RATES: Record<string, number> = { SGD: 0.03, LAMB: 0.01 };

export async function runCostBreakdown(context: SuiteContext): Promise<void> {
  const size = SIZES[context.size];
  // MKOR-H costs what MKOR costs until it switches and what Adam costs after: not measured apart.
  const factories = context.optimizers.filter((f) => f.name !== 'MKOR-H');
  const tasks = convergenceTasks(context);
  const lamb = factories.find((f) => f.name === 'LAMB') as OptimizerFactory;
  const mkor = factories.find((f) => f.name === 'MKOR') as OptimizerFactory;
  const bar = context.progress('cost-breakdown', tasks.length * factories.length + size.batches.length * 2 * size.repeats);
  const sections: string[] = [];
  for (const task of tasks) {
    await context.useBackend(task.backend);
    const failures: string[] = [];
    const costs = factories.flatMap((factory) => {
      try {
        const cost = measureStepCost(task, factory, LEARNING_RATES[factory.name] ?? 1e-3, size.warmup, size.steps);
        return [{ factory, cost }];
      } catch (error) {
        failures.push(`- ${factory.name} threw \`${(error as Error).message.split('\n')[0]}\``);
        return [];
      } finally {
        bar.tick(`${task.name} ${factory.name}`);
      }
    });
    const ms = (v: number): string => (Number.isFinite(v) ? formatNumber(v) : 'n/a');
    const lambTotal = costs.find((c) => c.factory.name === 'LAMB')?.cost.totalMs ?? Number.NaN;
    const table = markdownTable(
      ['optimizer', 'forward + backward ms', 'factor ms', 'precondition ms', 'weight update ms', 'total ms / step', '× LAMB'],
      costs.map(({ factory, cost }) => [
        factory.name,
        ms(cost.forwardBackwardMs),
        factory.secondOrder ? ms(cost.factorMs) : '0',
        factory.secondOrder ? ms(cost.preconditionMs) : '0',
        ms(cost.updateMs),
        ms(cost.totalMs),
        `${formatNumber(cost.totalMs / lambTotal)}×`,
      ]),
    );
    const plot = context.plot(
      `cost-breakdown-${task.name}`,
      barChart({
        title: `${task.name}: milliseconds per step (${task.backend})`,
        yLabel: 'ms per step',
        categories: costs.map((c) => c.factory.name),
        stacked: true,
        series: [
          { name: 'forward + backward', values: costs.map((c) => c.cost.forwardBackwardMs) },
          { name: 'factors', values: costs.map((c) => c.cost.factorMs) },
          { name: 'precondition', values: costs.map((c) => c.cost.preconditionMs) },
          { name: 'weight update', values: costs.map((c) => c.cost.updateMs) },
        ],
      }),
    );
    const failed = failures.length === 0 ? '' : `\n\nNot measured:\n\n${failures.join('\n')}`;
    sections.push(`## ${task.name}\n\n${task.description}; ${size.steps} timed steps after ${size.warmup} warm-up steps, f = ${DEFAULT_FACTOR_INTERVAL} (factor cost amortised over the steps), backend ${task.backend}.\n\n${table}${failed}\n\n${plot}`);
  }

  // MKOR's full step against LAMB's over batch sizes (the MLP, wasm).
  await context.useBackend('wasm');
  const ratios = size.batches.map((batch) => {
    const task = mlpTask(context.taskSizes, batch);
    const measureBoth = (factory: OptimizerFactory): number[] =>
      Array.from({ length: size.repeats }, () => {
        const cost = measureStepCost(task, factory, LEARNING_RATES[factory.name] ?? 1e-3, size.warmup, size.steps);
        bar.tick(`mlp batch ${batch} ${factory.name}`);
        return cost.totalMs;
      });
    const lambMs = summarize(measureBoth(lamb)).median;
    const mkorMs = summarize(measureBoth(mkor)).median;
    return { batch, lambMs, mkorMs, ratio: mkorMs / lambMs };
  });
  bar.done();
  const crossover = ratios.find((r) => r.ratio <= 1.3);
  const regime = ratios.filter((r) => r.batch >= 4 * context.taskSizes.mlpHidden);
  const met = regime.length > 0 && regime.every((r) => r.ratio <= 1.3);
  const ratioTable = markdownTable(
    ['batch rows', 'LAMB ms / step', 'MKOR ms / step', 'MKOR / LAMB'],
    ratios.map((r) => [String(r.batch), formatNumber(r.lambMs), formatNumber(r.mkorMs), `${formatNumber(r.ratio)}×`]),
  );
  const ratioPlot = context.plot(
    'cost-breakdown-batch-ratio',
    lineChart({
      title: 'MLP: MKOR step time / LAMB step time against batch size',
      xLabel: 'batch rows',
      yLabel: 'MKOR / LAMB',
      logX: true,
      series: [{ name: 'MKOR / LAMB', points: ratios.map((r) => [r.batch, r.ratio] as [number, number]) }],
      horizontalLines: [{ y: 1.3, label: 'target 1.3×' }],
    }),
  );
  context.publish(
    'cost-breakdown',
    'cost-breakdown: time per step by part (paper Fig. 3)',
    `Forward + backward is \`computeGradients\` (with the loss read back); the optimizer step is
\`applyGradients\` (ended by reading a weight back). Second-order optimizers report their factor
and preconditioning milliseconds (\`optimizer.metrics.factorMs\` / \`preconditionMs\`: exact on the
synchronous wasm and cpu backends); the weight update is the rest of the optimizer step (the
first-order backend and the assignment). MKOR-H is left out: it costs what MKOR costs until it
switches and what Adam costs after.

${sections.join('\n\n')}

## MKOR against LAMB over batch sizes (MLP, f = ${DEFAULT_FACTOR_INTERVAL}, wasm)

Median over ${size.repeats} measurement(s) of ${size.steps} steps. Preconditioning costs two
d × d products per layer (O(d³), independent of the batch), the rest of a step grows with the
batch rows, so the ratio falls as the batch grows.

${ratioTable}

${ratioPlot}

**Target: MKOR's full step ≤ 1.3× a LAMB step at batch sizes well above the layer width
(here ≥ ${4 * context.taskSizes.mlpHidden} rows, 4× the hidden width ${context.taskSizes.mlpHidden}): ${regime.length === 0 ? 'not measured (no such batch size in this run)' : met ? '**met**' : '**missed**'}.**
${crossover === undefined ? 'The ratio stayed above 1.3× at every batch size measured.' : `The ratio first falls to ≤ 1.3× at ${crossover.batch} rows.`}
`,
  );
}
