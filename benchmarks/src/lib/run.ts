/**
 * What every benchmark program shares: the `--smoke` and `--engine` flags, engine selection and the report
 * (printed, and written to `benchmarks/results/<name>.md`; smoke runs write `<name>.smoke.tmp`,
 * which git ignores, so that they never overwrite measured results).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { checkOneOf } from '@mkor/core';
import { type EngineChoice, type EngineName, engineNames, useEngine } from '@mkor/engine';

/** The command-line options every benchmark understands. */
export interface BenchmarkOptions {
  /** `--smoke`: tiny sizes and few repeats, so CI runs every benchmark in seconds. */
  readonly smoke: boolean;
  /**
   * `--engine NAME` (`@mkor/engine`: wasm, wasm-native, cpu, tensorflow, tensorflow-gpu, auto):
   * what runs the work that would run on wasm. Default `'wasm'` (wasm with `@mkor/wasm-kernels`).
   */
  readonly engine: EngineName;
}

/** The engine of this process's benchmark, set by {@link parseOptions}. */
let selectedEngine: EngineName = 'wasm';
/** What {@link useBackend} last chose, for the report. */
let lastChoice: EngineChoice | undefined;

/**
 * Parses `--smoke` and `--engine NAME` (or `--engine=NAME`), rejecting anything else so typos do
 * not silently run the full benchmark; the engine becomes the one {@link useBackend} uses.
 */
export function parseOptions(argv: readonly string[] = process.argv.slice(2)): BenchmarkOptions {
  let engine: string = 'wasm';
  const unknown: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--smoke') continue;
    if (arg === '--engine' && i + 1 < argv.length) engine = argv[++i]!;
    else if (arg.startsWith('--engine=')) engine = arg.slice('--engine='.length);
    else unknown.push(arg);
  }
  if (unknown.length > 0) throw new Error(`unknown arguments: ${unknown.join(' ')} (only --smoke and --engine NAME are accepted)`);
  selectedEngine = checkOneOf('parseOptions', '--engine', engine, engineNames);
  return { smoke: argv.includes('--smoke'), engine: selectedEngine };
}

/**
 * Selects and initialises what computes: `'cpu'` is the cpu backend; `'wasm'` (the default) is
 * the engine chosen by `--engine` (see {@link parseOptions}; `engine` overrides it).
 */
export async function useBackend(name: 'wasm' | 'cpu' = 'wasm', engine: EngineName = selectedEngine): Promise<void> {
  lastChoice = await useEngine(name === 'cpu' ? 'cpu' : engine);
}

const resultsDirectory = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../results');

/** Prints the report and writes it to `benchmarks/results/<name>.md` (`<name>.smoke.tmp` when smoke). */
export function publishReport(name: string, options: BenchmarkOptions, markdown: string): string {
  mkdirSync(resultsDirectory, { recursive: true });
  const file = path.join(resultsDirectory, options.smoke ? `${name}.smoke.tmp` : `${name}.md`);
  const engineLine = lastChoice === undefined ? '' : `\n\nEngine (\`@mkor/engine\`): ${lastChoice.engine} — ${lastChoice.reason}.`;
  writeFileSync(file, `${markdown.trimEnd()}${engineLine}\n`);
  console.log(`${markdown}${engineLine}`);
  console.log(`\nwritten to ${path.relative(process.cwd(), file)}`);
  return file;
}
