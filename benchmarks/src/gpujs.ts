/**
 * Benchmark `gpujs`: `@mkor/gpujs-kernels` (gpu.js) against the TensorFlow.js ops computing the
 * same thing, side by side in one run (issue 13, gpu.js part):
 *
 * - MKOR's refresh of a dense d × d inverse factor (`'exact'` form): `refreshInverse` against
 *   `updateInverseFactor` of `@mkor/sherman-morrison`;
 * - dense preconditioning `R⁻¹·G·L⁻¹`, G d × d: `precondition` against `applyInverseFactor` on
 *   each side (what `kroneckerPrecondition` computes);
 * - low-rank preconditioning, both factors `c·I + U·diag(m)·Uᵀ` of rank 32, the same way;
 *
 * at d = 128 … 2048, and for the layers of the 784-512-512-10 MLP (bias folded in: R⁻¹ 785, 513,
 * 513; L⁻¹ 512, 512, 10) the refresh of all six factors and the preconditioning of all three
 * gradients. gpu.js in its cpu and webasm modes and in headless-gl (WebGL 1 through ANGLE on
 * Mesa's llvmpipe, a CPU renderer) where the optional `gl` package built (under `xvfb-run`: this
 * program re-runs itself under it when there is no display); tfjs on wasm (with
 * `@mkor/wasm-kernels`), wasm-native (OpenBLAS, when its addon is built) and cpu. Then the
 * same operations in Debian's Chromium (SwiftShader, also a CPU renderer): gpu.js WebGL 2 against
 * tfjs webgl and wasm (`gpujs-page.ts`). None of these are GPU numbers.
 *
 * gpu.js times include what its typed-array API does: the upload of the inputs and the read-back
 * of the result. tfjs times start from tensors on the backend and end when the result is computed
 * (one element read back). Every result is checked against tfjs wasm's (relative Frobenius
 * difference ≤ 1e-4). An implementation slower than 3 s at one size is not run at the larger ones.
 *
 * Run: `npm run bench:gpujs` in `benchmarks/` (build the packages first; for wasm-native also
 * `npm run build:native -w @mkor/openblas`). `--smoke` runs tiny sizes.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { useEngine } from '@mkor/engine';
import { type KernelMode, createMkorKernels } from '@mkor/gpujs-kernels';

import { describeEnvironment, environmentTable, formatNumber, markdownTable, measure, parseOptions, publishReport } from './lib';
import type { BrowserRequest, BrowserResult } from './gpujs-page';
import { BUDGET_MS, type PreparedProblem, type Problem, operations, overBudget, prepareGpujs, prepareTfjs, relativeDifference } from './gpujs-problems';

// headless-gl needs an X display: re-run under xvfb-run when there is none and it is installed.
if (process.env.DISPLAY === undefined && process.env.MKOR_GPUJS_UNDER_XVFB === undefined && spawnSync('which', ['xvfb-run']).status === 0) {
  const child = spawnSync('xvfb-run', ['-a', process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, MKOR_GPUJS_UNDER_XVFB: '1' },
  });
  process.exit(child.status ?? 1);
}

const options = parseOptions();
const smoke = options.smoke;
const OPERATIONS = operations(smoke);
const CHROMIUM = '/usr/bin/chromium';
const repeatsFor = (milliseconds: number) => (smoke ? { warmup: 0, repeats: 2 } : milliseconds > 500 ? { warmup: 0, repeats: 3 } : { warmup: 1, repeats: 7 });

/** An implementation: prepares a problem for its timed call. */
interface Contender {
  readonly name: string;
  prepare(problem: Problem): PreparedProblem;
}

function gpujsContender(mode: KernelMode): Contender {
  const kernels = createMkorKernels({ mode });
  return { name: `gpu.js ${kernels.mode}`, prepare: (problem) => prepareGpujs(kernels, problem) };
}

/** A measured time and the result's relative difference from tfjs wasm's, or why not measured. */
type Cell = { ms: number; difference: number } | { skipped: string };
/** Cells per implementation, per operation and problem. */
const table = new Map<string, Map<string, Cell>>();
const cellKey = (operation: string, label: string): string => `${operation} | ${label}`;
/** tfjs wasm's results, which every other result is checked against. */
const reference = new Map<string, Float32Array[]>();

/** Records a measurement, refusing a result that differs from tfjs wasm's. */
function record(name: string, key: string, ms: number, results: Float32Array[]): void {
  if (name === 'tfjs wasm') reference.set(key, results.map((result) => Float32Array.from(result)));
  const difference = relativeDifference(results, reference.get(key) ?? []);
  if (!(difference <= 1e-4)) throw new Error(`${name}, ${key}: the result differs from tfjs wasm's by ${difference}`);
  const cells = table.get(name) ?? new Map<string, Cell>();
  table.set(name, cells);
  cells.set(key, { ms, difference });
  console.log(`${name.padEnd(26)} ${key.padEnd(64)} ${formatNumber(ms)} ms`);
}

function skip(name: string, key: string): void {
  const cells = table.get(name) ?? new Map<string, Cell>();
  table.set(name, cells);
  cells.set(key, { skipped: `> ${BUDGET_MS / 1000} s` });
}

/** Runs every problem with one implementation, leaving out those its growth puts over the budget. */
function runContender(contender: Contender): void {
  for (const operation of OPERATIONS) {
    let slowest: { ms: number; work: number } | undefined;
    for (const spec of operation.problems) {
      const key = cellKey(operation.name, spec.label);
      if (overBudget(slowest, spec.work)) {
        skip(contender.name, key);
        continue;
      }
      const prepared = contender.prepare(spec.build());
      const once = measure(prepared.run, { warmup: 0, repeats: 1 }).medianMs;
      const timing = measure(prepared.run, repeatsFor(once));
      record(contender.name, key, timing.medianMs, prepared.results());
      prepared.dispose();
      if (slowest === undefined || timing.medianMs >= slowest.ms) slowest = { ms: timing.medianMs, work: spec.work };
    }
  }
}

const notes: string[] = [];
const engines: ('wasm' | 'wasm-native' | 'cpu')[] = ['wasm'];
const native = await useEngine('wasm-native', { log: () => undefined });
if (native.engine === 'wasm-native') engines.push('wasm-native');
else notes.push(`tfjs wasm-native: not available (${native.reason}); not measured.`);
engines.push('cpu');
for (const engine of engines) {
  const choice = await useEngine(engine, { log: () => undefined });
  if (choice.engine !== engine) throw new Error(`tfjs ${engine} did not start: ${choice.reason}`);
  runContender({ name: `tfjs ${engine}`, prepare: prepareTfjs });
}
const gpujsModes: KernelMode[] = ['cpu', 'webasm', 'headlessgl'];
for (const mode of gpujsModes) {
  let contender: Contender;
  try {
    contender = gpujsContender(mode);
  } catch (error) {
    notes.push(`gpu.js ${mode}: not measured: ${(error as Error).message}`);
    continue;
  }
  runContender(contender);
}
if (existsSync(CHROMIUM)) notes.push(await runInChromium());
else notes.push(`Chromium: ${CHROMIUM} is missing (bash scripts/install-system-deps.sh); the browser columns are not measured.`);

/**
 * Runs the problems in Debian's Chromium (headless, SwiftShader): the page `gpujs-page.ts`, served
 * by Vite (cross-origin isolated, so tfjs wasm may use threads), computes each with gpu.js WebGL 2
 * and tfjs webgl and wasm and returns times and results, checked here against tfjs wasm's in Node.
 * Returns the page's description of its renderer.
 */
async function runInChromium(): Promise<string> {
  const { createServer } = await import('vite');
  const { chromium } = await import('playwright-core');
  const isolation = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
  const vite = await createServer({
    root: fileURLToPath(new URL('..', import.meta.url)),
    logLevel: 'warn',
    configFile: false,
    server: { host: '127.0.0.1', port: 0, headers: isolation, hmr: false },
    plugins: [
      {
        name: 'gpujs-benchmark-page',
        configureServer: (server) =>
          void server.middlewares.use((request, response, next) => {
            if (request.url !== '/') return next();
            for (const [header, value] of Object.entries(isolation)) response.setHeader(header, value);
            response.setHeader('Content-Type', 'text/html');
            response.end('<!doctype html><html><body><script type="module" src="/src/gpujs-page.ts"></script></body></html>');
          }),
      },
    ],
  });
  await vite.listen();
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  try {
    const url = vite.resolvedUrls?.local[0];
    if (url === undefined) throw new Error('Vite gave no local URL');
    const page = await browser.newPage();
    page.on('pageerror', (error) => console.error(`[chromium] ${error.message}`));
    await page.goto(url);
    await page.waitForFunction(() => 'gpujsBenchmark' in globalThis, undefined, { timeout: 300_000 });
    for (const [operationIndex, operation] of OPERATIONS.entries()) {
      const slowest = new Map<string, { ms: number; work: number }>();
      for (const [problemIndex, spec] of operation.problems.entries()) {
        const key = cellKey(operation.name, spec.label);
        const request: BrowserRequest = {
          operation: operationIndex,
          problem: problemIndex,
          smoke,
          skip: [...slowest.entries()].filter(([, s]) => overBudget(s, spec.work)).map(([name]) => name),
        };
        const outcome = await page.evaluate(
          (r) => (globalThis as unknown as { gpujsBenchmark(request: BrowserRequest): Promise<BrowserResult[]> }).gpujsBenchmark(r),
          request,
        );
        for (const entry of outcome) {
          if (entry.ms === undefined) {
            skip(entry.name, key);
            continue;
          }
          record(entry.name, key, entry.ms, entry.results.map((text) => new Float32Array(new Uint8Array(Buffer.from(text, 'base64')).buffer)));
          const previous = slowest.get(entry.name);
          if (previous === undefined || entry.ms >= previous.ms) slowest.set(entry.name, { ms: entry.ms, work: spec.work });
        }
      }
    }
    return `Chromium ${browser.version()}: ${await page.evaluate(() => (globalThis as unknown as { gpujsRenderer: string }).gpujsRenderer)}.`;
  } finally {
    await browser.close();
    await vite.close();
  }
}

/** The report: per operation, ms per implementation and the ratio to tfjs wasm in Node. */
function report(): string {
  const names = [...table.keys()];
  const sections = OPERATIONS.map((operation) => {
    const rows = operation.problems.map((spec) => {
      const key = cellKey(operation.name, spec.label);
      const base = table.get('tfjs wasm')?.get(key);
      return [
        spec.label,
        ...names.map((name) => {
          const cell = table.get(name)?.get(key);
          if (cell === undefined) return '—';
          if ('skipped' in cell) return `skipped (${cell.skipped})`;
          const ratio = base !== undefined && 'ms' in base ? ` (${formatNumber(cell.ms / base.ms)}×)` : '';
          return `${formatNumber(cell.ms)}${ratio}`;
        }),
      ];
    });
    return `### ${operation.name}\n\nms per call (in brackets: the ratio to tfjs wasm in Node; below 1 is faster)\n\n${markdownTable(['problem', ...names], rows)}`;
  });
  const differences = [...table.values()].flatMap((cells) => [...cells.values()].flatMap((cell) => ('difference' in cell ? [cell.difference] : [])));
  return [
    '# gpu.js kernels against tfjs (`npm run bench:gpujs`)',
    `Measured ${new Date().toISOString().slice(0, 16)}Z${smoke ? ' (smoke run)' : ''}. headless-gl renders with Mesa's llvmpipe and Chromium's WebGL with SwiftShader: both are CPU renderers, so no column here is a GPU's. gpu.js times include the upload of the inputs and the read-back of the result (its typed-array API); tfjs times start from tensors on the backend and end when the result is computed. Every result agrees with tfjs wasm's to a relative Frobenius difference of at most ${Math.max(...differences).toExponential(1)}. An implementation over ${BUDGET_MS / 1000} s on one size is not run on the sizes its growth (d² for the refresh, d³ or r·d² for the products) puts over that.`,
    ...sections,
    ...(notes.length > 0 ? [['Notes:', ...notes.map((note) => `- ${note}`)].join('\n')] : []),
    environmentTable(describeEnvironment(['gpu.js', '@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-wasm', 'playwright-core'])),
  ].join('\n\n');
}

publishReport('gpujs', options, report());
