/**
 * Runs the benchmark suites that test the paper's claims on real data, with a progress bar on
 * stderr; each writes `benchmarks/results/<suite>.md` and its SVG plots.
 *
 *   npm run bench:suite -- convergence             # one suite, modest size
 *   npm run bench:suite -- all --size full         # every suite at full size (hours)
 *   npm run bench:suite -- all --smoke             # CI: every suite in a few steps
 *
 * Options: `--size smoke|modest|full` (default modest; `--smoke` = `--size smoke`),
 * `--seeds N` (repeats of the convergence runs; default 1 smoke, 3 modest, 5 full),
 * `--tasks mlp,autoencoder,transformer,cnn` (the models the model-based suites use; default all),
 * `--engine NAME` (`@mkor/engine`; default `wasm`, the wasm backend with `@mkor/wasm-kernels`).
 */
// The @tensorflow/tfjs bundle registers the gradients (tfjs-core alone registers none) and the layers API.
import '@tensorflow/tfjs';

import { parseArgs } from 'node:util';

import { checkOneOf } from '@mkor/core';
import { engineNames } from '@mkor/engine';

import { runConvergence } from './suites/convergence';
import { type SuiteContext, type SuiteSize, suiteContext } from './suites/context';
import { runCostBreakdown } from './suites/cost-breakdown';
import { runMemory } from './suites/memory';
import { OPTIMIZERS } from './suites/optimizers';
import { runRank1Error } from './suites/rank1-error';
import { runRefreshInterval } from './suites/refresh-interval';
import { runScaling } from './suites/scaling';

const SUITES: Record<string, (context: SuiteContext) => Promise<void>> = {
  convergence: runConvergence,
  'cost-breakdown': runCostBreakdown,
  scaling: runScaling,
  'refresh-interval': runRefreshInterval,
  'rank1-error': runRank1Error,
  memory: runMemory,
};

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    smoke: { type: 'boolean', default: false },
    size: { type: 'string' },
    seeds: { type: 'string' },
    tasks: { type: 'string' },
    engine: { type: 'string', default: 'wasm' },
  },
});
const engine = checkOneOf('run-suite', '--engine', values.engine, engineNames);
const size = (values.smoke ? 'smoke' : (values.size ?? 'modest')) as SuiteSize;
if (!['smoke', 'modest', 'full'].includes(size)) throw new Error(`run-suite: --size must be smoke, modest or full, got ${size}`);
if (values.smoke && values.size !== undefined && values.size !== 'smoke') throw new Error('run-suite: --smoke contradicts --size');
const seedCount = values.seeds === undefined ? { smoke: 1, modest: 3, full: 5 }[size] : Number(values.seeds);
if (!(Number.isInteger(seedCount) && seedCount >= 1)) throw new Error(`run-suite: --seeds must be an integer ≥ 1, got ${values.seeds}`);
const names = positionals.length === 0 || positionals.includes('all') ? Object.keys(SUITES) : positionals;
const unknown = names.filter((n) => !(n in SUITES));
if (unknown.length > 0) throw new Error(`run-suite: unknown suite(s) ${unknown.join(', ')}; known: ${Object.keys(SUITES).join(', ')}, all`);

for (const name of names) {
  const run = SUITES[name] as (context: SuiteContext) => Promise<void>;
  await run(suiteContext(size, Array.from({ length: seedCount }, (_, i) => i + 1), OPTIMIZERS, values.tasks?.split(','), engine));
}
