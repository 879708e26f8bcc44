/**
 * The page's charts as SVG text, drawn with `@mkor/svg-charts` (`lineChart`,
 * `barChart`): loss against step and against seconds (MKOR-H's switch drawn as a vertical line),
 * and the mean per-step cost split.
 */
import { type LineSeries, barChart, lineChart } from '@mkor/svg-charts';

import type { OptimizerRun } from './train';

/** The vertical line marking MKOR-H's switch, as a two-point series at x, spanning the losses. */
function switchMarker(runs: readonly OptimizerRun[], xOf: (run: OptimizerRun, step: number) => number | undefined): LineSeries[] {
  const hybrid = runs.find((run) => run.name === 'MKOR-H' && run.switchedAtStep >= 0);
  if (hybrid === undefined) return [];
  const x = xOf(hybrid, hybrid.switchedAtStep);
  const losses = runs.flatMap((run) => run.records.map((record) => record.loss)).filter(Number.isFinite);
  if (x === undefined || losses.length === 0) return [];
  return [{ name: `MKOR-H switch (step ${hybrid.switchedAtStep})`, points: [[x, Math.min(...losses)], [x, Math.max(...losses)]] }];
}

/** Training loss against step (`against: 'step'`) or against seconds of the optimizer's own steps. */
export function lossChart(runs: readonly OptimizerRun[], against: 'step' | 'seconds'): string {
  const xOf = (run: OptimizerRun, step: number) => {
    const record = run.records[step];
    return record === undefined ? undefined : against === 'step' ? record.step : record.seconds;
  };
  return lineChart({
    title: against === 'step' ? 'Training loss against step' : 'Training loss against seconds',
    xLabel: against === 'step' ? 'step' : 'seconds of this optimizer’s steps',
    yLabel: 'softmax cross-entropy',
    series: [
      ...runs.map((run) => ({ name: run.name, points: run.records.map((record, step) => [xOf(run, step) ?? Number.NaN, record.loss] as const) })),
      ...switchMarker(runs, xOf),
    ],
  });
}

/** Mean milliseconds per step of `part` over a run's records. */
function meanMs(run: OptimizerRun, part: (record: OptimizerRun['records'][number]) => number): number {
  return run.records.length === 0 ? 0 : run.records.reduce((sum, record) => sum + part(record), 0) / run.records.length;
}

/** The mean per-step cost of each run, stacked: factor refresh, preconditioning, and the rest of the step. */
export function costChart(runs: readonly OptimizerRun[]): string {
  return barChart({
    title: 'Mean cost of a step',
    yLabel: 'milliseconds per step',
    categories: runs.map((run) => run.name),
    stacked: true,
    series: [
      { name: 'forward, backward, update', values: runs.map((run) => meanMs(run, (r) => Math.max(0, r.stepMs - r.factorMs - r.preconditionMs))) },
      { name: 'factor refresh', values: runs.map((run) => meanMs(run, (r) => r.factorMs)) },
      { name: 'preconditioning', values: runs.map((run) => meanMs(run, (r) => r.preconditionMs)) },
    ],
  });
}
