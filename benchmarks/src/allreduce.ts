/**
 * Benchmark `allreduce`: latency and throughput of one all-reduce through every transport —
 * in-process (one rank, and a simulated group of 4 in one thread), `worker_threads` with 2 and 4
 * workers, and Open MPI (`@mkor/mpi`) with 2 and 4 ranks under `mpirun` — for the payloads a
 * data-parallel step of the 784-256-256-10 MLP sends: MKOR's rank-1 vectors
 * (`Σ (d_in + 1 + d_out)` numbers), KFAC's factors (`Σ (d_in + 1)² + d_out²`) and, for scale,
 * the weight gradients; float32 against float16 on the wire; and the MPI transport's overhead
 * against the same collective called from C (`packages/mpi/bench/allreduce.c`, built here with
 * `mpicc`).
 *
 * Run: `npm run bench:allreduce` in `benchmarks/` (build `@mkor/allreduce` and `@mkor/mpi`, and the
 * addon: `npm run build:native -w @mkor/mpi`). The same file is the program of every worker thread
 * and MPI rank (`MKOR_ALLREDUCE_BENCH_ROLE`); MPI rows are skipped, with a note, without `mpirun`.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isMainThread } from 'node:worker_threads';

import { InProcessTransport, createSimulatedGroup } from '@mkor/allreduce';
import { joinWorkerGroup, startWorkerGroup } from '@mkor/allreduce/worker-threads';
import type { Transport, WirePrecision } from '@mkor/allreduce';

import { describeEnvironment, environmentTable, formatNumber, markdownTable, parseOptions, publishReport, quantile } from './lib';

/** One payload: a name and its number of float32 elements. */
interface Payload {
  readonly name: string;
  readonly elements: number;
  readonly iterations: number;
}

/** What a rank program is asked to time (handed through `workerData` or an environment variable). */
interface RankTask {
  readonly payloads: readonly Payload[];
  readonly precisions: readonly WirePrecision[];
}

/** Median and minimum of one collective, the slowest rank's time per call, in microseconds. */
interface CallTiming {
  readonly medianUs: number;
  readonly minUs: number;
}

/** Per payload and precision, the timing. */
type RankResults = Record<string, Partial<Record<WirePrecision, CallTiming>>>;

const ROLE_VARIABLE = 'MKOR_ALLREDUCE_BENCH_ROLE';
const TASK_VARIABLE = 'MKOR_ALLREDUCE_BENCH_TASK';
const thisFile = fileURLToPath(import.meta.url);

/**
 * Times `iterations` all-reduces (`op: 'sum'`, as the C reference) of `elements` numbers on one
 * rank: each call follows a barrier, and its time is the slowest rank's (gathered with a second,
 * untimed all-reduce), so every rank computes the same statistics.
 */
async function timeAllReduce(transport: Transport, elements: number, precision: WirePrecision, iterations: number): Promise<CallTiming> {
  const values = Float32Array.from({ length: elements }, (_, i) => Math.sin(i + transport.rank));
  for (let warmup = 0; warmup < 3; warmup++) await transport.allReduce(values, { precision });
  const micros: number[] = [];
  for (let i = 0; i < iterations; i++) {
    await transport.barrier();
    const start = performance.now();
    await transport.allReduce(values, { precision });
    const elapsed = (performance.now() - start) * 1000;
    const slots = new Float32Array(transport.worldSize);
    slots[transport.rank] = elapsed;
    micros.push(Math.max(...(await transport.allReduce(slots))));
  }
  micros.sort((a, b) => a - b);
  return { medianUs: quantile(micros, 0.5), minUs: micros[0] as number };
}

/** Every payload and precision of `task` on one rank. */
async function runTask(transport: Transport, task: RankTask): Promise<RankResults> {
  const results: RankResults = {};
  for (const payload of task.payloads) {
    const byPrecision: Partial<Record<WirePrecision, CallTiming>> = {};
    for (const precision of task.precisions) {
      byPrecision[precision] = await timeAllReduce(transport, payload.elements, precision, payload.iterations);
    }
    results[payload.name] = byPrecision;
  }
  return results;
}

const role = process.env[ROLE_VARIABLE];
if (!isMainThread) {
  // A worker thread of a worker group: time, then leave.
  const { transport, data } = joinWorkerGroup<{ task: RankTask }>();
  await runTask(transport, data.task);
  await transport.close();
} else if (role === 'mpi-rank') {
  const { MpiTransport } = await import('@mkor/mpi');
  const transport = await MpiTransport.create({ timeoutMs: 120_000 });
  const results = await runTask(transport, JSON.parse(process.env[TASK_VARIABLE] as string) as RankTask);
  if (transport.rank === 0) console.log(JSON.stringify(results));
  await transport.close();
} else {
  await main();
}

/** `d_in → d_out` of the MLP's dense layers. */
function layersOf(widths: readonly number[]): [number, number][] {
  return widths.slice(1).map((out, k) => [widths[k] as number, out]);
}

function findOnPath(command: string): string | undefined {
  for (const folder of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(folder, command);
    if (folder !== '' && existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** A group of `worldSize` threads (this one as rank 0, plus `worldSize − 1` workers) running `task`. */
async function timeWorkerThreads(worldSize: number, task: RankTask): Promise<RankResults> {
  // Node 20 applies no `--import tsx` to workers: a tiny data: module registers tsx's loader, then
  // imports this file, which takes the worker branch above.
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const boot = `import { register } from ${JSON.stringify(tsxApi)}; register(); await import(${JSON.stringify(pathToFileURL(thisFile).href)});`;
  const group = startWorkerGroup({
    worldSize,
    includeMainThread: true,
    module: new URL(`data:text/javascript,${encodeURIComponent(boot)}`),
    workerData: { task },
    timeoutMs: 120_000,
  });
  try {
    return await runTask(group.transport as Transport, task);
  } finally {
    await group.close();
  }
}

/** `ranks` threads of one simulated group in this thread, all running `task`; rank 0's results. */
async function timeSimulated(ranks: number, task: RankTask): Promise<RankResults> {
  const group = createSimulatedGroup(ranks);
  const results = await Promise.all(group.map((transport) => runTask(transport, task)));
  return results[0] as RankResults;
}

/** `mpirun -np ranks` of this file in the MPI-rank role; rank 0's results, or why there are none. */
function timeMpi(mpirun: string, ranks: number, task: RankTask): RankResults | string {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    [ROLE_VARIABLE]: 'mpi-rank',
    [TASK_VARIABLE]: JSON.stringify(task),
    OMPI_MCA_btl_vader_single_copy_mechanism: 'none',
  };
  delete env.NODE_OPTIONS;
  const args = ['--allow-run-as-root', '--oversubscribe', '-np', String(ranks), process.execPath, '--import', 'tsx', thisFile];
  const run = spawnSync(mpirun, args, { env, encoding: 'utf8', timeout: 600_000 });
  const line = run.stdout.split('\n').find((text) => text.startsWith('{'));
  if (run.status !== 0 || line === undefined) return `mpirun exited with ${run.status}: ${run.stderr.trim().split('\n').slice(-3).join(' ')}`;
  return JSON.parse(line) as RankResults;
}

/** The C reference (`MPI_Allreduce` and `MPI_Iallreduce` + `MPI_Test`, float32 sum) for the payloads. */
function timeC(mpirun: string, binary: string, ranks: number, payloads: readonly Payload[]): Map<number, { allreduce: CallTiming; iallreduceTest: CallTiming }> | string {
  const env: NodeJS.ProcessEnv = { ...process.env, OMPI_MCA_btl_vader_single_copy_mechanism: 'none' };
  const args = ['--allow-run-as-root', '--oversubscribe', '-np', String(ranks), binary, ...payloads.map((p) => String(p.elements))];
  const run = spawnSync(mpirun, args, { env, encoding: 'utf8', timeout: 600_000 });
  const line = run.stdout.split('\n').find((text) => text.startsWith('{'));
  if (run.status !== 0 || line === undefined) return `the C reference exited with ${run.status}: ${run.stderr.trim()}`;
  const parsed = JSON.parse(line) as { results: { elements: number; allreduce: CallTiming; iallreduceTest: CallTiming }[] };
  return new Map(parsed.results.map((r) => [r.elements, { allreduce: r.allreduce, iallreduceTest: r.iallreduceTest }]));
}

/** Builds `packages/mpi/bench/allreduce.c` with `mpicc` into a temporary folder. */
function buildC(folder: string): string | { error: string } {
  const mpicc = findOnPath('mpicc');
  if (mpicc === undefined) return { error: 'mpicc is not on PATH' };
  const source = resolve(dirname(thisFile), '../../packages/mpi/bench/allreduce.c');
  const binary = join(folder, 'allreduce-c');
  try {
    execFileSync(mpicc, ['-O2', '-o', binary, source], { stdio: 'pipe' });
  } catch (error) {
    return { error: `mpicc failed: ${(error as Error).message}` };
  }
  return binary;
}

async function main(): Promise<void> {
  const options = parseOptions();
  const widths = options.smoke ? [784, 32, 10] : [784, 256, 256, 10];
  const layers = layersOf(widths);
  const iterationsFor = (elements: number): number => (options.smoke ? 3 : elements > 100_000 ? 20 : 200);
  const payload = (name: string, elements: number): Payload => ({ name, elements, iterations: iterationsFor(elements) });
  const mkor = payload('MKOR vectors Σ(d_in+1+d_out)', layers.reduce((sum, [i, o]) => sum + i + 1 + o, 0));
  const kfac = payload('KFAC factors Σ(d_in+1)²+d_out²', layers.reduce((sum, [i, o]) => sum + (i + 1) ** 2 + o ** 2, 0));
  const gradients = payload('weight gradients Σ(d_in+1)·d_out', layers.reduce((sum, [i, o]) => sum + (i + 1) * o, 0));
  const payloads = [mkor, kfac, gradients];
  const task: RankTask = { payloads, precisions: ['float32', 'float16'] };
  const rankCounts = options.smoke ? [2] : [2, 4];

  interface Row {
    readonly transport: string;
    readonly ranks: number;
    readonly results: RankResults | string;
  }
  const rows: Row[] = [];
  const log = (text: string): void => console.error(`[allreduce] ${text}`);
  log('in-process');
  rows.push({ transport: '`InProcessTransport` (one rank: a copy)', ranks: 1, results: await runTask(new InProcessTransport(), task) });
  rows.push({ transport: '`createSimulatedGroup` (ranks in one thread)', ranks: 4, results: await timeSimulated(4, task) });
  for (const ranks of rankCounts) {
    log(`worker_threads, ${ranks} ranks`);
    rows.push({ transport: '`worker_threads` (main thread + workers)', ranks, results: await timeWorkerThreads(ranks, task) });
  }
  const mpirun = findOnPath('mpirun');
  const scratch = mkdtempSync(join(tmpdir(), 'mkor-allreduce-bench-'));
  const notes: string[] = [];
  const cRows: { ranks: number; timings: ReturnType<typeof timeC> }[] = [];
  try {
    if (mpirun === undefined) notes.push('MPI rows skipped: `mpirun` is not on PATH (install openmpi-bin libopenmpi-dev).');
    else {
      for (const ranks of rankCounts) {
        log(`MPI, ${ranks} ranks`);
        rows.push({ transport: '`MpiTransport` (`mpirun`, one process per rank)', ranks, results: timeMpi(mpirun, ranks, task) });
      }
      const binary = buildC(scratch);
      if (typeof binary !== 'string') notes.push(`C reference skipped: ${binary.error}.`);
      else {
        for (const ranks of rankCounts) {
          log(`C reference, ${ranks} ranks`);
          cRows.push({ ranks, timings: timeC(mpirun, binary, ranks, payloads) });
        }
      }
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }

  const microseconds = (t: CallTiming | undefined): string => (t === undefined ? '—' : `${formatNumber(t.medianUs)} (${formatNumber(t.minUs)})`);
  const sections = payloads.map((p) => {
    const table = markdownTable(
      ['transport', 'ranks', 'float32 µs, median (min)', 'float16 µs, median (min)', 'float16 / float32', 'float32 payload MB/s'],
      rows.map(({ transport, ranks, results }) => {
        if (typeof results === 'string') return [transport, String(ranks), `failed: ${results}`, '', '', ''];
        const f32 = results[p.name]?.float32;
        const f16 = results[p.name]?.float16;
        return [
          transport,
          String(ranks),
          microseconds(f32),
          microseconds(f16),
          f32 && f16 ? `${formatNumber(f16.medianUs / f32.medianUs)}×` : '—',
          f32 ? formatNumber((4 * p.elements) / f32.medianUs) : '—',
        ];
      }),
    );
    return `### ${p.name}: ${p.elements.toLocaleString('en-US')} numbers (${formatNumber((4 * p.elements) / 1024)} KiB in float32), ${p.iterations} calls\n\n${table}`;
  });

  const overheadRows = cRows.flatMap(({ ranks, timings }) => {
    const node = rows.find((row) => row.transport.startsWith('`MpiTransport`') && row.ranks === ranks)?.results;
    if (typeof timings === 'string') return [[String(ranks), '', `failed: ${timings}`, '', '', '']];
    return payloads.map((p) => {
      const c = timings.get(p.elements);
      const fromNode = typeof node === 'string' || node === undefined ? undefined : node[p.name]?.float32;
      return [
        String(ranks),
        p.name,
        microseconds(c?.allreduce),
        microseconds(c?.iallreduceTest),
        microseconds(fromNode),
        fromNode && c ? `${formatNumber(fromNode.medianUs / c.iallreduceTest.medianUs)}×` : '—',
      ];
    });
  });
  const overhead =
    overheadRows.length === 0
      ? ''
      : `## The MPI transport against the same collective from C\n\nfloat32, sum. \`MpiTransport\` runs \`MPI_Iallreduce\` polled with \`MPI_Test\` on its own thread, plus (by default) a 10-integer agreement check per call.\n\n${markdownTable(
          ['ranks', 'payload', 'C `MPI_Allreduce` µs', 'C `MPI_Iallreduce` + `MPI_Test` µs', '`MpiTransport` µs (Node)', 'Node / C (polled)'],
          overheadRows,
        )}\n`;

  const environment = describeEnvironment(['@mkor/allreduce', '@mkor/mpi']);
  const markdown = `# allreduce: the transports, for MKOR- and KFAC-sized payloads

The 784-${widths.slice(1).join('-')} MLP (${layers.length} dense layers with biases). One call's time is the slowest rank's,
after a barrier; median and minimum over the calls, in microseconds. \`float16\` rounds each
contribution to float16 before the sum (\`@mkor/allreduce\`'s wire precision; the MPI transport's
default \`'convert'\` wire still moves float32 bytes). Throughput counts the float32 payload of one
rank per median call. ${options.smoke ? '**Smoke run: tiny model, 3 calls — not measurements.**' : ''}

${sections.join('\n\n')}

${overhead}
${notes.map((note) => `- ${note}`).join('\n')}

## Environment

${environmentTable(environment)}
`;
  publishReport('allreduce', options, markdown);
}
