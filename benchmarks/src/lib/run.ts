/**
 * What every benchmark program shares: the `--smoke` flag, backend selection and the report
 * (printed, and written to `benchmarks/results/<name>.md`; smoke runs write `<name>.smoke.tmp`,
 * which git ignores, so that they never overwrite measured results).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';

/** The command-line options every benchmark understands. */
export interface BenchmarkOptions {
  /** `--smoke`: tiny sizes and few repeats, so CI runs every benchmark in seconds. */
  readonly smoke: boolean;
}

/** Parses `--smoke` (and rejects anything else, so typos do not silently run the full benchmark). */
export function parseOptions(argv: readonly string[] = process.argv.slice(2)): BenchmarkOptions {
  const unknown = argv.filter((a) => a !== '--smoke');
  if (unknown.length > 0) throw new Error(`unknown arguments: ${unknown.join(' ')} (only --smoke is accepted)`);
  return { smoke: argv.includes('--smoke') };
}

/** Selects and initialises a TensorFlow.js backend (`wasm` unless told otherwise). */
export async function useBackend(name: 'wasm' | 'cpu' = 'wasm'): Promise<void> {
  if (!(await tf.setBackend(name))) throw new Error(`the ${name} backend failed to initialise`);
  await tf.ready();
}

const resultsDirectory = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../results');

/** Prints the report and writes it to `benchmarks/results/<name>.md` (`<name>.smoke.tmp` when smoke). */
export function publishReport(name: string, options: BenchmarkOptions, markdown: string): string {
  mkdirSync(resultsDirectory, { recursive: true });
  const file = path.join(resultsDirectory, options.smoke ? `${name}.smoke.tmp` : `${name}.md`);
  writeFileSync(file, `${markdown.trimEnd()}\n`);
  console.log(markdown);
  console.log(`\nwritten to ${path.relative(process.cwd(), file)}`);
  return file;
}
