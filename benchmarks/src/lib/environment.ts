/**
 * What a benchmark ran on: machine, runtime, backend, package versions, date and the exact
 * command, recorded in every report so numbers can be compared only with their context.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

import * as tf from '@tensorflow/tfjs-core';

import { markdownTable } from './markdown';

/** The environment of a run. */
export interface Environment {
  readonly cpuModel: string;
  readonly logicalCores: number;
  readonly memoryGiB: number;
  /** 1-minute load average when the report was written: other work on the machine skews timings. */
  readonly loadAverage: number;
  readonly platform: string;
  readonly node: string;
  readonly backend: string;
  /** Package name → version, as installed. */
  readonly packages: Readonly<Record<string, string>>;
  readonly date: string;
  readonly command: string;
}

const require = createRequire(import.meta.url);

/** The installed version of a package, read from its package.json. */
function installedVersion(name: string): string {
  try {
    const entry = require.resolve(name);
    // Walk up from the entry point to the package's own package.json.
    for (let dir = path.dirname(entry); dir !== path.dirname(dir); dir = path.dirname(dir)) {
      try {
        const manifest = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
        if (manifest.name === name) return manifest.version ?? 'unknown';
      } catch {
        // no package.json at this level: keep walking up
      }
    }
  } catch {
    return 'not installed';
  }
  return 'unknown';
}

/**
 * The command that started this process: `npm run <script>` when run through npm (with the
 * script's own command line), else the node command line.
 */
function invokingCommand(): string {
  const argv = process.argv.slice(1).map((a) => path.relative(process.cwd(), a) || a);
  const direct = `tsx ${argv.join(' ')}`;
  const script = process.env.npm_lifecycle_event;
  // `npx` sets the variable too; only an npm script is worth naming.
  return script === undefined || script === 'npx' ? direct : `npm run ${script} (in benchmarks/; runs: ${direct})`;
}

/** Records the environment; `packages` lists the packages whose versions matter. */
export function describeEnvironment(packages: readonly string[]): Environment {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    logicalCores: cpus.length,
    memoryGiB: os.totalmem() / 2 ** 30,
    loadAverage: os.loadavg()[0] ?? Number.NaN,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    // Empty when no tensor was ever created: the benchmark ran plain TypeScript only.
    backend: tf.getBackend() || 'none (plain TypeScript, no tensors)',
    packages: Object.fromEntries(['@tensorflow/tfjs-core', ...packages].map((name) => [name, installedVersion(name)])),
    date: new Date().toISOString(),
    command: invokingCommand(),
  };
}

/** The environment as a markdown table. */
export function environmentTable(environment: Environment): string {
  const rows: string[][] = [
    ['CPU', `${environment.cpuModel} (${environment.logicalCores} logical cores)`],
    ['memory', `${environment.memoryGiB.toFixed(1)} GiB`],
    ['load average (1 min, at the end)', environment.loadAverage.toFixed(2)],
    ['platform', environment.platform],
    ['Node.js', environment.node],
    ['TensorFlow.js backend', environment.backend],
    ...Object.entries(environment.packages).map(([name, version]) => [name, version]),
    ['date', environment.date],
    ['command', `\`${environment.command}\``],
  ];
  return markdownTable(['', ''], rows);
}
