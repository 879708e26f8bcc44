/**
 * Suite `convergence`: every optimizer on every task — a small learning-rate sweep (seed 0), then
 * the chosen rate over several seeds: steps and wall time to the target loss, final test metric,
 * and the spread over seeds.
 */
import { formatNumber, lineChart, markdownTable, summarize } from '../lib';
import type { SuiteContext } from './context';
import type { OptimizerFactory } from './optimizers';
import { type Task, autoencoderTask, cnnTask, mlpTask, transformerTask } from './tasks';
import { type TrainingRun, finalLoss, trailingMean, trainRun } from './training';

/** Steps per run by size and task. */
const STEPS: Record<SuiteContext['size'], Record<string, number>> = {
  smoke: { mlp: 3, autoencoder: 3, cnn: 2, transformer: 3 },
  modest: { mlp: 200, autoencoder: 120, cnn: 60, transformer: 150 },
  full: { mlp: 1000, autoencoder: 1000, cnn: 500, transformer: 2000 },
};

/** How many rates a sweep may add beyond its listed ones while its best rate lies at an edge. */
const MAX_SWEEP_EXTENSIONS = 2;

/** One point of a learning-rate sweep. */
interface SweepPoint {
  readonly learningRate: number;
  readonly finalLoss: number;
}

/**
 * The learning-rate sweep: every listed rate, then, while the best rate is the smallest or the
 * largest tried, one more rate a grid step beyond it (at most {@link MAX_SWEEP_EXTENSIONS}), so
 * that a chosen rate is never the edge of what was tried unless the extensions ran out.
 * Returns the points sorted by rate.
 */
function sweepLearningRates(rates: readonly number[], finalLossAt: (learningRate: number) => number): SweepPoint[] {
  const points: SweepPoint[] = rates.map((learningRate) => ({ learningRate, finalLoss: finalLossAt(learningRate) }));
  const sorted = (): SweepPoint[] => [...points].sort((a, b) => a.learningRate - b.learningRate);
  for (let extension = 0; extension < MAX_SWEEP_EXTENSIONS && points.length >= 2; extension++) {
    const byRate = sorted();
    const best = points.reduce((b, p) => (p.finalLoss < b.finalLoss ? p : b));
    const first = byRate[0] as SweepPoint;
    const last = byRate[byRate.length - 1] as SweepPoint;
    let next: number;
    if (best === last) next = last.learningRate * (last.learningRate / (byRate[byRate.length - 2] as SweepPoint).learningRate);
    else if (best === first) next = first.learningRate / ((byRate[1] as SweepPoint).learningRate / first.learningRate);
    else break;
    next = Number(next.toPrecision(3));
    points.push({ learningRate: next, finalLoss: finalLossAt(next) });
  }
  return sorted();
}

/** Whether `learningRate` is the smallest or largest rate of a sweep of two or more. */
function atEdge(sweep: readonly SweepPoint[], learningRate: number): boolean {
  return sweep.length >= 2 && (learningRate === sweep[0]?.learningRate || learningRate === sweep[sweep.length - 1]?.learningRate);
}

/** The tasks of the suite. */
export function convergenceTasks(context: SuiteContext): Task[] {
  const sizes = context.taskSizes;
  const all = [mlpTask(sizes), autoencoderTask(sizes), transformerTask(sizes), cnnTask(sizes)];
  const wanted = context.tasks;
  if (wanted === undefined) return all;
  const unknown = wanted.filter((name) => !all.some((task) => task.name === name));
  if (unknown.length > 0) throw new Error(`run-suite: unknown task(s) ${unknown.join(', ')}; known: ${all.map((t) => t.name).join(', ')}`);
  return all.filter((task) => wanted.includes(task.name));
}

const fmtMs = (ms: number | null): string => (ms === null ? '–' : `${formatNumber(ms / 1000)} s`);
const spread = (values: readonly number[], digits = 3): string => {
  const s = summarize(values);
  if (s.count === 0) return '–';
  return s.count === 1 ? formatNumber(s.mean, digits) : `${formatNumber(s.mean, digits)} ± ${formatNumber(s.std, 2)} (${formatNumber(s.min, digits)}–${formatNumber(s.max, digits)})`;
};

interface OptimizerResult {
  readonly factory: OptimizerFactory;
  readonly sweep: SweepPoint[];
  readonly learningRate: number;
  readonly runs: TrainingRun[];
}

/** Runs the suite on the tasks given (default: all four). */
export async function runConvergence(context: SuiteContext, tasks = convergenceTasks(context)): Promise<void> {
  const factories = context.optimizers;
  const smoke = context.size === 'smoke';
  const sweepRates = (factory: OptimizerFactory): number[] =>
    smoke || factory.name === 'MKOR-H' ? [] : [...factory.learningRates];
  const totalSteps = tasks.reduce((sum, task) => {
    const steps = STEPS[context.size][task.name] ?? 0;
    return sum + factories.reduce((s, f) => s + steps * (sweepRates(f).length + context.seeds.length), 0);
  }, 0);
  const bar = context.progress('convergence', totalSteps);
  for (const task of tasks) {
    await context.useBackend(task.backend);
    const steps = STEPS[context.size][task.name] ?? 0;
    const results: OptimizerResult[] = [];
    for (const factory of factories) {
      const listed = sweepRates(factory);
      const sweep = sweepLearningRates(listed, (learningRate) => {
        if (!listed.includes(learningRate)) bar.grow(steps);
        const run = trainRun(task, factory, learningRate, 0, steps, {}, () => bar.tick(`${task.name} ${factory.name} lr ${formatNumber(learningRate)}`));
        return finalLoss(run);
      });
      // MKOR-H shares MKOR's tuned rate (it is MKOR until it switches); smoke runs take the middle rate.
      const mkorRate = results.find((r) => r.factory.name === 'MKOR')?.learningRate;
      const middle = factory.learningRates[Math.floor(factory.learningRates.length / 2)] as number;
      const best = sweep.reduce<SweepPoint | null>((b, s) => (b === null || s.finalLoss < b.finalLoss ? s : b), null);
      const learningRate = factory.name === 'MKOR-H' && mkorRate !== undefined ? mkorRate : (best?.learningRate ?? middle);
      const runs = context.seeds.map((seed) =>
        trainRun(task, factory, learningRate, seed, steps, {}, () => bar.tick(`${task.name} ${factory.name} seed ${seed}`)),
      );
      results.push({ factory, sweep, learningRate, runs });
    }
    // One report per task, written as soon as the task is done: a long run that is stopped
    // still leaves its finished tasks.
    publishConvergence(context, task, taskSection(context, task, steps, results));
  }
  bar.done();
}

function publishConvergence(context: SuiteContext, task: Task, section: string): void {
  const factories = context.optimizers;
  const optimizers = markdownTable(
    ['optimizer', 'configuration', 'listed learning rates'],
    factories.map((f) => [f.name, f.description, f.name === 'MKOR-H' ? 'uses MKOR’s tuned rate' : f.learningRates.join(', ')]),
  );
  context.publish(
    `convergence-${task.name}`,
    `convergence on the ${task.name}: steps and wall time to a target, final test metric`,
    `Each optimizer's learning rate is swept on seed 0 (criterion: the mean training loss over the
last fifth of the run, lowest wins; a diverged run loses) over the listed rates and, while the best
is the smallest or largest tried, up to ${MAX_SWEEP_EXTENSIONS} more a grid step beyond it; then trained with the chosen rate on
seeds ${context.seeds.join(', ')} (the seed sets the initial weights and the data order). "Steps to
target": the first step at which the mean training loss of the last 10 steps is at or below the
task's target; wall time counts forward, backward, the optimizer step and the loss read-back
(identical for every optimizer), not evaluation. Spreads are mean ± standard deviation (min–max)
over the seeds that reached the target; "reached" counts them.

${optimizers}

${section}
`,
  );
}

function taskSection(context: SuiteContext, task: Task, steps: number, results: OptimizerResult[]): string {
  const failures = results.flatMap(({ factory, runs }) =>
    runs.filter((r) => r.failure !== undefined).map((r) => `- ${factory.name}, seed ${r.seed}: threw \`${r.failure}\``),
  );
  const rows = results.map(({ factory, sweep, learningRate, runs }) => {
    const reached = runs.filter((r) => r.stepsToTarget !== null);
    return [
      factory.name,
      sweep.length === 0 ? String(learningRate) : sweep.map((s) => `${s.learningRate}: ${formatNumber(s.finalLoss)}`).join(', ') + ` → **${learningRate}**${atEdge(sweep, learningRate) ? ' (still the edge: extensions ran out)' : ''}`,
      `${reached.length}/${runs.length}`,
      spread(reached.map((r) => r.stepsToTarget as number)),
      reached.length === 0 ? '–' : spread(reached.map((r) => (r.msToTarget as number) / 1000)) + ' s',
      spread(runs.map((r) => finalLoss(r))),
      spread(runs.map((r) => r.test.metric), 4),
      formatNumber(summarize(runs.map((r) => (r.elapsedMs.at(-1) ?? Number.NaN) / r.losses.length)).mean) + ' ms',
      factory.name === 'MKOR-H' ? runs.map((r) => (r.switchedAtStep ?? -1) < 0 ? 'never' : String(r.switchedAtStep)).join(', ') : '',
    ];
  });
  const firstOrder = results.filter((r) => !r.factory.secondOrder);
  const meanSteps = (r: OptimizerResult): number =>
    r.runs.every((run) => run.stepsToTarget !== null) ? summarize(r.runs.map((run) => run.stepsToTarget as number)).mean : Number.POSITIVE_INFINITY;
  const meanMs = (r: OptimizerResult): number =>
    r.runs.every((run) => run.msToTarget !== null) ? summarize(r.runs.map((run) => run.msToTarget as number)).mean : Number.POSITIVE_INFINITY;
  const fewestFirstOrderSteps = Math.min(...firstOrder.map(meanSteps));
  const fastestFirstOrder = Math.min(...firstOrder.map(meanMs));
  const verdicts = results
    .filter((r) => r.factory.name === 'MKOR' || r.factory.name === 'MKOR-H')
    .map((r) => {
      const s = meanSteps(r);
      const ms = meanMs(r);
      const fewer = Number.isFinite(s) && s < fewestFirstOrderSteps;
      const faster = Number.isFinite(ms) && ms < fastestFirstOrder;
      return `- ${r.factory.name}: ${Number.isFinite(s) ? `${formatNumber(s)} steps` : 'did not reach the target on every seed'} against the best first-order ${Number.isFinite(fewestFirstOrderSteps) ? formatNumber(fewestFirstOrderSteps) : '– (none reached it on every seed)'} → fewer steps: **${fewer ? 'yes' : 'no'}**; ${Number.isFinite(ms) ? fmtMs(ms) : '–'} against ${Number.isFinite(fastestFirstOrder) ? fmtMs(fastestFirstOrder) : '–'} → less wall time: **${faster ? 'yes' : 'no'}**.`;
    });
  const curves = context.plot(
    `convergence-${task.name}`,
    lineChart({
      title: `${task.name}: training loss (mean of last 10 steps), seed ${context.seeds[0]}`,
      xLabel: 'step',
      yLabel: task.lossName,
      logY: true,
      series: results.map((r) => {
        const run = r.runs[0] as TrainingRun;
        return { name: `${r.factory.name} (lr ${r.learningRate})`, points: run.losses.map((_, i) => [i + 1, trailingMean(run.losses, i)] as [number, number]) };
      }),
      horizontalLines: [{ y: task.targetLoss, label: `target ${task.targetLoss}` }],
    }),
  );
  const timeCurves = context.plot(
    `convergence-${task.name}-time`,
    lineChart({
      title: `${task.name}: training loss against wall time, seed ${context.seeds[0]}`,
      xLabel: 'seconds',
      yLabel: task.lossName,
      logY: true,
      series: results.map((r) => {
        const run = r.runs[0] as TrainingRun;
        return { name: r.factory.name, points: run.losses.map((_, i) => [(run.elapsedMs[i] as number) / 1000, trailingMean(run.losses, i)] as [number, number]) };
      }),
      horizontalLines: [{ y: task.targetLoss, label: `target ${task.targetLoss}` }],
    }),
  );
  return `## ${task.name}

${task.description}; ${steps} steps a run, target: training ${task.lossName} ≤ ${task.targetLoss}, backend ${task.backend}.

${markdownTable(
  ['optimizer', 'sweep: lr: final loss → chosen', 'reached', 'steps to target', 'time to target', 'final training loss', task.metric.name, 'ms / step', 'MKOR-H switch step'],
  rows,
)}

${failures.length === 0 ? '' : `Runs that failed (counted as diverged):\n\n${failures.join('\n')}\n\n`}Against the first-order optimizers (means over seeds; a target not reached on every seed counts as not reached):

${verdicts.join('\n')}

${curves}

${timeCurves}`;
}
