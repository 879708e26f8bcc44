/**
 * Plot files next to the reports: `benchmarks/results/<name>.svg`, or `<name>.svg.smoke.tmp` for
 * smoke runs (ignored by git, so smoke runs never overwrite measured plots).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { BenchmarkOptions } from './run';

const resultsDirectory = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../results');

/** Writes an SVG plot and returns its file name relative to `benchmarks/results/` (for a markdown link). */
export function publishPlot(name: string, options: BenchmarkOptions, svg: string): string {
  mkdirSync(resultsDirectory, { recursive: true });
  const file = options.smoke ? `${name}.svg.smoke.tmp` : `${name}.svg`;
  writeFileSync(path.join(resultsDirectory, file), `${svg}\n`);
  return file;
}
