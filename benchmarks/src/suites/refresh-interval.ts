/**
 * Suite `refresh-interval` (paper Fig. 4): the Fashion-MNIST autoencoder trained by MKOR and KFAC
 * with factor refresh intervals f = 1 … 100: time per step and convergence against f.
 */
import { formatNumber, lineChart, markdownTable, summarize } from '../lib';
import type { SuiteContext } from './context';
import type { OptimizerFactory } from './optimizers';
import { autoencoderTask } from './tasks';
import { type TrainingRun, finalLoss, trailingMean, trainRun } from './training';

const SIZES = {
  smoke: { intervals: [1, 10], steps: 3 },
  modest: { intervals: [1, 3, 10, 30, 100], steps: 150 },
  full: { intervals: [1, 3, 10, 30, 100, 300], steps: 1000 },
} as const;

const LEARNING_RATE = 1e-3;

export async function runRefreshInterval(context: SuiteContext): Promise<void> {
  const size = SIZES[context.size];
  const task = autoencoderTask(context.taskSizes);
  await context.useBackend(task.backend);
  const factories = context.optimizers.filter((f) => f.name === 'MKOR' || f.name === 'KFAC');
  const bar = context.progress('refresh-interval', factories.length * size.intervals.length * size.steps);
  const results: { factory: OptimizerFactory; interval: number; run: TrainingRun }[] = [];
  for (const factory of factories) {
    for (const interval of size.intervals) {
      const run = trainRun(task, factory, LEARNING_RATE, 1, size.steps, { factorInterval: interval }, () => bar.tick(`${factory.name} f = ${interval}`));
      results.push({ factory, interval, run });
    }
  }
  bar.done();
  const msPerStep = (run: TrainingRun): number => {
    // Mean over the steps after the first (which includes one-off set-up of the factors).
    const times = run.elapsedMs.filter(Number.isFinite);
    return times.length < 2 ? Number.NaN : ((times.at(-1) as number) - (times[0] as number)) / (times.length - 1);
  };
  const table = markdownTable(
    ['optimizer', 'f', 'ms / step', 'step cost / f = 100 (or largest f)', 'steps to target', 'time to target', `final training ${task.lossName}`, task.metric.name],
    results.map(({ factory, interval, run }) => {
      const largest = results.filter((r) => r.factory === factory).at(-1)?.run as TrainingRun;
      return [
        factory.name,
        String(interval),
        formatNumber(msPerStep(run)),
        `${formatNumber(msPerStep(run) / msPerStep(largest))}×`,
        run.stepsToTarget === null ? '–' : String(run.stepsToTarget),
        run.msToTarget === null ? '–' : `${formatNumber(run.msToTarget / 1000)} s`,
        run.failure === undefined ? formatNumber(finalLoss(run)) : `failed: ${run.failure}`,
        formatNumber(run.test.metric, 4),
      ];
    }),
  );
  const spreadOfCost = factories.map((factory) => {
    const costs = results.filter((r) => r.factory === factory).map((r) => msPerStep(r.run));
    const s = summarize(costs);
    return `- ${factory.name}: step cost from ${formatNumber(s.min)} to ${formatNumber(s.max)} ms over f = ${size.intervals.join(', ')} (max / min ${formatNumber(s.max / s.min)}×).`;
  });
  const costPlot = context.plot(
    'refresh-interval-cost',
    lineChart({
      title: 'Autoencoder: time per step against refresh interval f',
      xLabel: 'f (steps between factor refreshes)',
      yLabel: 'ms per step',
      logX: true,
      series: factories.map((factory) => ({ name: factory.name, points: results.filter((r) => r.factory === factory).map((r) => [r.interval, msPerStep(r.run)] as [number, number]) })),
    }),
  );
  const lossPlots = factories.map((factory) =>
    context.plot(
      `refresh-interval-${factory.name.toLowerCase()}-loss`,
      lineChart({
        title: `Autoencoder, ${factory.name}: training loss (mean of last 10 steps) by f`,
        xLabel: 'step',
        yLabel: task.lossName,
        logY: true,
        series: results.filter((r) => r.factory === factory).map((r) => ({ name: `f = ${r.interval}`, points: r.run.losses.map((_, i) => [i + 1, trailingMean(r.run.losses, i)] as [number, number]) })),
        horizontalLines: [{ y: task.targetLoss, label: `target ${task.targetLoss}` }],
      }),
    ),
  );
  context.publish(
    'refresh-interval',
    'refresh-interval: step cost and convergence against the factor refresh interval (paper Fig. 4)',
    `${task.description}; ${size.steps} steps per run, seed 1, learning rate ${LEARNING_RATE} (Adam backend) for both,
f = MKOR's \`factorUpdateInterval\` and KFAC's \`inverseInterval\` (KFAC folds covariances into its
factors every step, its default). Time per step: wall time of steps 2 … n (forward, backward,
optimizer step, loss read-back) divided by n − 1. Target: training ${task.lossName} (mean of 10 steps) ≤ ${task.targetLoss}.
${table}

${spreadOfCost.join('\n')}

${costPlot}

${lossPlots.join('\n\n')}
`,
  );
}
