/**
 * End-to-end tests: `mpirun -np 4 node rank-program.mjs <scenario> <folder>` — test/rank-program.ts
 * bundled with `@mkor/*` taken from their sources — and checks of what the ranks wrote against
 * float64 references computed here. They need `mpirun` and the built addon (`npm run
 * build:native`); they are skipped, with a message, only when `mpirun` is not on PATH.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { FLOAT16_FORMAT64, roundToFormat64 } from '@mkor/testing';
import { build } from 'tsup';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { contribution, decodeResult, float16ProbeBuffer } from '../test/fixtures';
import { defaultAddonPath } from './addon';

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const WORLD_SIZE = 4;
/** float32 unit roundoff. */
const U32 = 2 ** -24;
/** float16 unit roundoff. */
const U16 = 2 ** -11;
/** Half the smallest float16 subnormal: the largest absolute rounding error below float16's normal range. */
const HALF_SUBNORMAL = 2 ** -25;

function findOnPath(command: string): string | undefined {
  for (const folder of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(folder, command);
    if (folder !== '' && existsSync(candidate)) return candidate;
  }
  return undefined;
}

const mpirun = findOnPath('mpirun');
const SKIP_REASON = 'mpirun is not on PATH (install openmpi-bin libopenmpi-dev to run them)';
if (mpirun === undefined) console.warn(`@mkor/mpi: SKIPPING the tests under mpirun: ${SKIP_REASON}`);
/** Where the bundled rank program goes: one level inside the package, like src/ and dist/, so that
 * it finds the addon at ../build/Release and its imports of `@tensorflow/tfjs-core` resolve. */
const bundleDir = join(packageDir, 'build');
/** A folder for the jobs' outputs, made in `beforeAll`. */
let scratch = '';

/** One JSON line a rank printed. */
interface RankLine {
  readonly rank: number;
  readonly id: string;
  readonly ok?: boolean;
  readonly elapsedMs?: number;
  readonly result?: string;
  readonly name?: string;
  readonly message?: string;
  readonly [field: string]: unknown;
}

interface JobOutcome {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly lines: readonly RankLine[];
  readonly elapsedMs: number;
  readonly leftovers: readonly number[];
}

/** Process ids whose command line contains `marker` (from /proc, or `ps` where there is none). */
function processesWith(marker: string): number[] {
  if (!existsSync('/proc/self/cmdline')) {
    const table = execFileSync('ps', ['-axo', 'pid=,args='], { encoding: 'utf8' });
    return table
      .split('\n')
      .filter((row) => row.includes(marker))
      .map((row) => Number.parseInt(row.trim(), 10));
  }
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(marker)) found.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return found;
}

/** Bundles test/rank-program.ts with the sources of `@mkor/*` (test/tsconfig.json maps them). */
async function bundleRankProgram(): Promise<void> {
  await build({
    config: false,
    entry: { 'rank-program': join(packageDir, 'test', 'rank-program.ts') },
    tsconfig: join(packageDir, 'test', 'tsconfig.json'),
    outDir: bundleDir,
    format: ['esm'],
    platform: 'node',
    target: 'node20',
    noExternal: [/^@mkor\//],
    external: [/^@tensorflow\//],
    silent: true,
    shims: true,
  });
}

/** Runs one scenario of test/rank-program.ts on 4 ranks; kills the job after `limitMs`. */
async function runJob(scenario: string, limitMs: number): Promise<JobOutcome> {
  const outputFolder = mkdtempSync(join(scratch, `${scenario}-`));
  const env: NodeJS.ProcessEnv = { ...process.env, OMPI_MCA_btl_vader_single_copy_mechanism: 'none' };
  delete env.NODE_OPTIONS;
  const args = ['--allow-run-as-root', '--oversubscribe', '-np', String(WORLD_SIZE)];
  args.push('node', join(bundleDir, 'rank-program.js'), scenario, outputFolder);
  const started = performance.now();
  const job = spawn(mpirun as string, args, { cwd: packageDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  job.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  job.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const killer = setTimeout(() => job.kill('SIGTERM'), limitMs);
  const code = await new Promise<number | null>((done) => job.on('close', (exitCode) => done(exitCode)));
  clearTimeout(killer);
  const elapsedMs = performance.now() - started;
  let leftovers = processesWith(outputFolder);
  for (let attempt = 0; attempt < 20 && leftovers.length > 0; attempt++) {
    await new Promise((wait) => setTimeout(wait, 100));
    leftovers = processesWith(outputFolder);
  }
  const lines = readdirSync(outputFolder).flatMap((file) =>
    readFileSync(join(outputFolder, file), 'utf8')
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as RankLine),
  );
  return { code, stdout, stderr, lines, elapsedMs, leftovers };
}

function linesWithId(job: JobOutcome, id: string): RankLine[] {
  const found = job.lines.filter((line) => line.id === id).sort((a, b) => a.rank - b.rank);
  return found;
}

/** The result every rank printed under `id`, after checking that all ranks got the same bits. */
function agreedResult(job: JobOutcome, id: string): Float32Array {
  const lines = linesWithId(job, id);
  expect(lines.map((line) => line.rank), id).toEqual([0, 1, 2, 3]);
  for (const line of lines) {
    expect(line.ok, `${id} on rank ${line.rank}: ${line.message ?? ''}`).toBe(true);
    expect(line.result, `${id}: rank ${line.rank} got different bits than rank 0`).toBe(lines[0]?.result);
  }
  return decodeResult(lines[0]?.result ?? '');
}

type Precision = 'float32' | 'float16-convert' | 'float16-half';

/**
 * Checks an all-reduce of the contributions `inputs[r]` against the float64 sum, element by
 * element, with the bound of the path the values took:
 * - float32: MPI adds worldSize float32 values in some order: `(p−1)·u₃₂·Σ|x_r|`.
 * - float16 'convert': each value is first rounded to float16 (`u₁₆|x_r|`, or at most 2⁻²⁵ below
 *   the normal range), then summed in float32: `u₁₆·Σ|x_r| + p·2⁻²⁵ + (p−1)·u₃₂·(1+u₁₆)·Σ|x_r|`.
 * - float16 'half': the contributions and each of the p−1 partial sums are rounded to float16:
 *   `((1+u₁₆)^p − 1)·Σ|x_r| + (2p−1)·2⁻²⁵` (plus the exact float32 adds of two float16 values).
 * For 'mean' the sum bound is divided by p, plus one float32 rounding of the division.
 */
function checkAllReduce(result: Float32Array, inputs: readonly Float32Array[], op: 'sum' | 'mean', precision: Precision): void {
  const p = inputs.length;
  const length = inputs[0]?.length ?? 0;
  expect(result.length).toBe(length);
  let worst = 0;
  for (let i = 0; i < length; i++) {
    let exact = 0;
    let magnitude = 0;
    for (const input of inputs) {
      exact += input[i] as number;
      magnitude += Math.abs(input[i] as number);
    }
    let bound: number;
    if (precision === 'float32') {
      bound = (p - 1) * U32 * magnitude;
    } else if (precision === 'float16-convert') {
      bound = U16 * magnitude + p * HALF_SUBNORMAL + (p - 1) * U32 * (1 + U16) * magnitude;
    } else {
      bound = ((1 + U16) ** p - 1) * magnitude + (2 * p - 1) * HALF_SUBNORMAL;
    }
    const expected = op === 'mean' ? exact / p : exact;
    if (op === 'mean') bound = bound / p + U32 * Math.abs(expected);
    const error = Math.abs((result[i] as number) - expected);
    // 1e-12·|x| absorbs the float64 rounding of the reference itself.
    expect(error, `element ${i}: got ${result[i]}, float64 reference ${expected}`).toBeLessThanOrEqual(
      bound * (1 + 1e-9) + 1e-12 * magnitude,
    );
    worst = Math.max(worst, bound > 0 ? error / bound : 0);
  }
  expect(worst).toBeLessThanOrEqual(1);
}

function contributions(seed: number, length: number): Float32Array[] {
  return Array.from({ length: WORLD_SIZE }, (_, rank) => contribution(rank, seed, length));
}

/** The sum/mean × float32/float16 all-reduces of `allReduces()` in test/rank-program.ts. */
function checkAllReduces(job: JobOutcome, float16Path: Precision): void {
  for (const length of [1, 7, 1000, 4099]) {
    for (const op of ['sum', 'mean'] as const) {
      for (const precision of ['float32', 'float16'] as const) {
        const result = agreedResult(job, `allReduce/${op}/${precision}/${length}`);
        checkAllReduce(result, contributions(length, length), op, precision === 'float32' ? 'float32' : float16Path);
      }
    }
  }
  // Rank 0 sends the probes and the others zeros: the result is each probe rounded to float16.
  const probes = float16ProbeBuffer(2000);
  const rounded = agreedResult(job, 'float16-rounding');
  for (let i = 0; i < probes.length; i++) {
    const expected = roundToFormat64(probes[i] as number, FLOAT16_FORMAT64);
    const got = rounded[i] as number;
    // `===`: the zeros of the other ranks turn a -0 probe into +0 (-0 + 0 = +0).
    const same = Number.isNaN(expected) ? Number.isNaN(got) : got === expected;
    expect(same, `float16 rounding of ${probes[i]}: got ${got}, float64 reference ${expected}`).toBe(true);
  }
}

function expectFailure(job: JobOutcome, id: string, ranks: readonly number[], name: string, text: string): RankLine[] {
  const lines = linesWithId(job, id);
  expect(lines.map((line) => line.rank), id).toEqual(ranks);
  for (const line of lines) {
    expect(line.ok, `${id} on rank ${line.rank}`).toBe(false);
    expect(line.name, `${id} on rank ${line.rank}: ${line.message ?? ''}`).toBe(name);
    expect(line.message).toContain(text);
  }
  return lines;
}

describe.skipIf(mpirun === undefined)(
  `MpiTransport on 4 ranks under mpirun${mpirun === undefined ? ` — SKIPPED: ${SKIP_REASON}` : ''}`,
  () => {
    beforeAll(async () => {
      expect(
        existsSync(defaultAddonPath()),
        `the addon ${defaultAddonPath()} is not built: run \`npm run build:native -w @mkor/mpi\` first`,
      ).toBe(true);
      scratch = mkdtempSync(join(tmpdir(), 'mkor-mpi-jobs-'));
      await bundleRankProgram();
    });
    afterAll(() => rmSync(scratch, { recursive: true, force: true }));

    it('reduces, broadcasts, waits at barriers, runs calls in flight, and reports mismatches', async () => {
      const job = await runJob('correctness', 90_000);
      expect(job.code, job.stderr).toBe(0);
      expect(job.leftovers).toEqual([]);
      expect(linesWithId(job, 'done').map((line) => line.rank)).toEqual([0, 1, 2, 3]);
      const info = linesWithId(job, 'info');
      expect(info.map((line) => line.worldSize)).toEqual([4, 4, 4, 4]);
      expect(info[0]?.libraryVersion).toMatch(/MPI/);
      expect(linesWithId(job, 'input-modified')).toEqual([]);

      checkAllReduces(job, 'float16-convert');

      // Eight calls in flight at once.
      checkAllReduce(agreedResult(job, 'flight/allReduce/sum/3'), contributions(3, 3), 'sum', 'float32');
      expect(agreedResult(job, 'flight/broadcast/2/5')).toEqual(contribution(2, 5, 5));
      checkAllReduce(agreedResult(job, 'flight/allReduce/mean/4099'), contributions(4099, 4099), 'mean', 'float32');
      expect(linesWithId(job, 'flight/barrier').map((line) => line.ok)).toEqual([true, true, true, true]);
      expect(agreedResult(job, 'flight/allReduce/sum/0')).toEqual(new Float32Array(0));
      checkAllReduce(agreedResult(job, 'flight/allReduce/float16/100'), contributions(100, 100), 'sum', 'float16-convert');
      expect(agreedResult(job, 'flight/broadcast/0/1')).toEqual(contribution(0, 1, 1));
      checkAllReduce(agreedResult(job, 'flight/allReduce/sum/70000'), contributions(70000, 70000), 'sum', 'float32');

      for (let root = 0; root < WORLD_SIZE; root++) {
        expect(agreedResult(job, `broadcast/${root}`)).toEqual(contribution(root, 11, 11));
      }

      // Rank 3 came 300 ms late: the others waited, with their event loops running (10 ms ticks,
      // about 30 expected; at least 5 allows for a loaded machine).
      for (const line of linesWithId(job, 'barrier').slice(0, 3)) {
        expect(line.ok).toBe(true);
        expect(line.elapsedMs).toBeGreaterThanOrEqual(250);
      }
      for (const line of linesWithId(job, 'barrier-ticks').slice(0, 3)) {
        expect(line.ticks as number).toBeGreaterThanOrEqual(5); // a blocked event loop would tick at most once
      }

      expectFailure(job, 'bad/buffer', [0, 1, 2, 3], 'TypeError', 'MpiTransport.allReduce: buffer must be a Float32Array');
      expectFailure(job, 'bad/root', [0, 1, 2, 3], 'RangeError', 'MpiTransport.broadcast: root must be');
      expectFailure(job, 'bad/timeout', [0, 1, 2, 3], 'RangeError', 'MpiTransport.barrier: timeoutMs must be');
      expectFailure(job, 'bad/op', [0, 1, 2, 3], 'RangeError', "MpiTransport.allReduce: op must be one of 'sum', 'mean'");

      expectFailure(
        job,
        'mismatch/length',
        [0, 1, 2, 3],
        'TransportMismatchError',
        'buffer lengths differ across ranks, from 10 to 12 elements',
      );
      expectFailure(job, 'mismatch/kind', [0, 1, 2, 3], 'TransportMismatchError', 'different collectives');
      expectFailure(job, 'mismatch/op', [0, 1, 2, 3], 'TransportMismatchError', "different ops ('sum' and 'mean'");
      expectFailure(job, 'mismatch/root', [0, 1, 2, 3], 'TransportMismatchError', 'different roots, from 0 to 1');
      checkAllReduce(agreedResult(job, 'after-mismatch'), contributions(9, 9), 'sum', 'float32');
      expectFailure(job, 'after-close', [0, 1, 2, 3], 'TransportClosedError', 'is closed');
    });

    it("sends float16 bit patterns with the 'half' wire format within its error bound", async () => {
      const job = await runJob('half-wire', 60_000);
      expect(job.code, job.stderr).toBe(0);
      expect(job.leftovers).toEqual([]);
      expect(linesWithId(job, 'done').map((line) => line.rank)).toEqual([0, 1, 2, 3]);
      checkAllReduces(job, 'float16-half');
    });

    it('a rank that leaves early: the others time out with a clear error and the job ends', async () => {
      const job = await runJob('early-exit', 60_000);
      const waiting = expectFailure(job, 'waiting', [0, 1, 2], 'TransportTimeoutError', 'timed out after 1500 ms');
      for (const line of waiting) {
        expect(line.elapsedMs).toBeGreaterThanOrEqual(1500);
        expect(line.elapsedMs).toBeLessThan(1500 + 2000);
      }
      expectFailure(job, 'after-timeout', [0, 1, 2], 'TransportAbortedError', 'timed out after 1500 ms');
      // The survivors skip MPI_Finalize (a timed-out collective may still be pending), say so, and
      // mpirun ends the job, including the rank waiting in MPI_Finalize.
      expect(job.stderr).toContain('MPI_Finalize skipped');
      expect(job.code).not.toBe(0);
      expect(job.leftovers).toEqual([]);
    });

    it('a rank that crashes: mpirun ends the job and the others report why before the timeout', async () => {
      const job = await runJob('crash', 60_000);
      const waiting = expectFailure(job, 'waiting', [0, 1, 2], 'TransportAbortedError', 'received SIGTERM: mpirun is ending the job');
      for (const line of waiting) expect(line.elapsedMs).toBeLessThan(10_000); // the timeout was 30 s
      for (const rank of [0, 1, 2]) {
        expect(job.stderr).toContain(`[@mkor/mpi rank ${rank}/4] received SIGTERM: mpirun is ending the job`);
      }
      expect(job.code).not.toBe(0);
      expect(job.leftovers).toEqual([]);
    });

    it.each([
      ['uncaught-exception', 'exited with code 1 after an uncaught exception: Error: injected failure in the step'],
      ['unhandled-rejection', 'exited with code 1 after an unhandled rejection: Error: injected rejection in the step'],
      ['exit-code', 'exited with code 3'],
    ])('a rank that dies by %s tells the others, who fail naming it within seconds', async (how, cause) => {
      const job = await runJob(`dies-${how}`, 60_000);
      const waiting = expectFailure(job, 'waiting', [0, 1, 2], 'TransportAbortedError', `rank 3 ${cause}`);
      // The timeout was 30 s; the notice travels as soon as the rank's process starts to exit.
      for (const line of waiting) expect(line.elapsedMs).toBeLessThan(3000);
      expect(job.stderr).toContain(`[@mkor/mpi rank 3/4] exiting without MPI_Finalize: told the other ranks`);
      expect(job.code).not.toBe(0);
      expect(job.leftovers).toEqual([]);
    });
  },
);
