/**
 * The page's charts as SVG text, drawn with `@mkor/svg-charts` (`lineChart`, `barChart`): loss
 * against step and against seconds (MKOR-H's switch drawn as a vertical line), the mean per-step
 * cost split (of this run, next to earlier runs on other engines), and the spectra of one layer's
 * inverse factors in MKOR's run.
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

/** Runs that trained on one engine (e.g. wasm with tfjs's kernels), under the label the cost chart gives them. */
export interface EngineRuns {
  readonly engine: string;
  readonly runs: readonly OptimizerRun[];
}

/**
 * The mean per-step cost of each run, stacked: factor refresh, preconditioning, and the rest of
 * the step; with runs of more than one engine, each bar is labelled `<optimizer> · <engine>`.
 */
export function costChart(groups: readonly EngineRuns[]): string {
  const bars = groups.flatMap(({ engine, runs }) => runs.map((run) => ({ label: groups.length > 1 ? `${run.name} · ${engine}` : run.name, run })));
  return barChart({
    title: groups.length > 1 ? 'Mean cost of a step, by engine' : 'Mean cost of a step',
    yLabel: 'milliseconds per step',
    categories: bars.map((bar) => bar.label),
    stacked: true,
    series: [
      { name: 'forward, backward, update', values: bars.map(({ run }) => meanMs(run, (r) => Math.max(0, r.stepMs - r.factorMs - r.preconditionMs))) },
      { name: 'factor refresh', values: bars.map(({ run }) => meanMs(run, (r) => r.factorMs)) },
      { name: 'preconditioning', values: bars.map(({ run }) => meanMs(run, (r) => r.preconditionMs)) },
    ],
  });
}

/**
 * The eigenvalues of one layer's inverse factors `R⁻¹` and `L⁻¹` in MKOR's run (MKOR-H's when MKOR
 * did not train), largest first on a logarithmic axis, at the first and the latest reading; an
 * empty string when no run recorded any.
 */
export function spectrumChart(runs: readonly OptimizerRun[]): string {
  const run = [...runs].sort((a, b) => Number(b.name === 'MKOR') - Number(a.name === 'MKOR')).find((candidate) => candidate.spectra.length > 0);
  if (run === undefined) return '';
  const readings = run.spectra.length > 1 ? [run.spectra[0], run.spectra.at(-1)] : [run.spectra[0]];
  const series = readings.flatMap((reading) =>
    reading === undefined
      ? []
      : [
          { name: `R⁻¹ (${reading.input.length}), step ${reading.step}`, points: reading.input.map((value, i) => [i + 1, value] as const) },
          { name: `L⁻¹ (${reading.output.length}), step ${reading.step}`, points: reading.output.map((value, i) => [i + 1, value] as const) },
        ],
  );
  return lineChart({
    title: `${run.name}: spectra of layer ${readings[0]?.layer ?? ''}'s inverse factors`,
    xLabel: 'eigenvalue number, largest first',
    yLabel: 'eigenvalue',
    logY: true,
    series,
  });
}
