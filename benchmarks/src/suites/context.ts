/**
 * What every suite is handed: its size, the optimizers compared, the task sizes and helpers to
 * switch backends, write plots and publish the report.
 */
import os from 'node:os';

import type { EngineName } from '@mkor/engine';

import {
  type BenchmarkOptions,
  type ProgressBar,
  describeEnvironment,
  environmentTable,
  progressBar,
  publishPlot,
  publishReport,
  useBackend,
} from '../lib';
import type { OptimizerFactory } from './optimizers';
import type { TaskSizes } from './tasks';

/** How big a run is: `smoke` (CI: a few steps, numbers meaningless), `modest` (a shared 2-core machine), `full`. */
export type SuiteSize = 'smoke' | 'modest' | 'full';

/** The context of one suite run. */
export interface SuiteContext {
  readonly size: SuiteSize;
  readonly options: BenchmarkOptions;
  /** Seeds of the repeated runs. */
  readonly seeds: readonly number[];
  /** Names of the tasks to run (`--tasks`); all when undefined. */
  readonly tasks: readonly string[] | undefined;
  /** The optimizers compared. */
  readonly optimizers: readonly OptimizerFactory[];
  readonly taskSizes: TaskSizes;
  /** 1-minute load average when the suite started. */
  readonly loadAtStart: number;
  progress(title: string, total: number): ProgressBar;
  /** 'cpu', or 'wasm': the suite's engine (`--engine`, default wasm with `@mkor/wasm-kernels`). */
  useBackend(name: 'wasm' | 'cpu'): Promise<void>;
  /** Writes a plot; returns a markdown image link to it. */
  plot(name: string, svg: string): string;
  /** Writes the report (with the environment and load averages appended). */
  publish(name: string, title: string, body: string): void;
}

/** Task sizes by suite size. */
export const TASK_SIZES: Record<SuiteSize, TaskSizes> = {
  smoke: { trainImages: 512, testImages: 256, mlpHidden: 32, batchSize: 64, autoencoderBatch: 64, cnnBatchSize: 8, transformerWidth: 16, transformerContext: 8, transformerBatch: 4, testWindows: 8 },
  modest: { trainImages: 12000, testImages: 2000, mlpHidden: 128, batchSize: 256, autoencoderBatch: 128, cnnBatchSize: 64, transformerWidth: 32, transformerContext: 32, transformerBatch: 16, testWindows: 128 },
  full: { trainImages: 60000, testImages: 10000, mlpHidden: 256, batchSize: 512, autoencoderBatch: 256, cnnBatchSize: 128, transformerWidth: 64, transformerContext: 64, transformerBatch: 32, testWindows: 512 },
};

/** Builds the context of a suite run; `engine` (`@mkor/engine`) runs what the tasks run on wasm. */
export function suiteContext(
  size: SuiteSize,
  seeds: readonly number[],
  optimizers: readonly OptimizerFactory[],
  tasks?: readonly string[],
  engine: EngineName = 'wasm',
): SuiteContext {
  const options: BenchmarkOptions = { smoke: size === 'smoke', engine };
  const loadAtStart = os.loadavg()[0] ?? Number.NaN;
  return {
    size,
    options,
    seeds,
    tasks,
    optimizers,
    taskSizes: TASK_SIZES[size],
    loadAtStart,
    progress: progressBar,
    useBackend: (name) => useBackend(name, engine),
    plot(name, svg) {
      const file = publishPlot(name, options, svg);
      return `![${name}](${file})`;
    },
    publish(name, title, body) {
      const environment = describeEnvironment(['@mkor/mkor', '@mkor/first-order', '@mkor/core', '@mkor/kfac', '@mkor/eva', '@tensorflow/tfjs-layers']);
      publishReport(
        name,
        options,
        `# ${title}${options.smoke ? ' (smoke run: a few steps, numbers meaningless)' : ''}

Size: \`${size}\`. 1-minute load average at the start ${loadAtStart.toFixed(2)}, at the end
${environment.loadAverage.toFixed(2)} (2 logical cores shared with other jobs: read times as
ratios measured in the same run).
${body.trim()}

## Environment

${environmentTable(environment)}
`,
      );
    },
  };
}
