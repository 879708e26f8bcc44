/**
 * `DataParallelTrainer` over Open MPI: `mpirun -np 4 node rank-program.js parallel ...` trains the
 * 784-128-64-10 Fashion-MNIST MLP with MKOR on four processes, each on a quarter of every batch,
 * and `node rank-program.js single ...` the same model on the full batches in one process; the
 * weights must agree. Needs `mpirun` and the `@mkor/mpi` addon (`npm run build:native -w
 * @mkor/mpi`); skipped, with a message, only when `mpirun` is not on PATH.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { build } from 'tsup';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { FAILING_TIMEOUT_MS, trajectoryDistance } from '../test/fixtures';
import type { RunReport } from '../test/rank-program';

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const addonPath = resolve(packageDir, '..', 'mpi', 'build', 'Release', 'mkor_mpi.node');
const backend = process.env.MKOR_TEST_BACKEND ?? 'wasm';
const WORLD_SIZE = 4;

function findOnPath(command: string): string | undefined {
  for (const folder of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(folder, command);
    if (folder !== '' && existsSync(candidate)) return candidate;
  }
  return undefined;
}

const mpirun = findOnPath('mpirun');
const SKIP_REASON = 'mpirun is not on PATH (install openmpi-bin libopenmpi-dev to run them)';
if (mpirun === undefined) console.warn(`@mkor/data-parallel: SKIPPING the tests under mpirun: ${SKIP_REASON}`);

/**
 * The bundle and the runs' outputs live in a fresh folder under this package's `node_modules`
 * (ignored by git and npm), from where `@tensorflow/*` resolve as for the package itself.
 */
let scratch = '';
let program = '';

/** Process ids whose command line contains `marker`. */
function processesWith(marker: string): number[] {
  return readdirSync('/proc').flatMap((entry) => {
    if (!/^\d+$/.test(entry)) return [];
    try {
      return readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(marker) ? [Number(entry)] : [];
    } catch {
      return []; // the process ended while we looked
    }
  });
}

interface Outcome {
  readonly code: number | null;
  readonly stderr: string;
  readonly reports: Record<string, RunReport>;
  readonly leftovers: number[];
}

/** Runs the program (under mpirun when `ranks` is given) in a fresh output folder; kills it after `limitMs`. */
async function run(mode: string, ranks: number | undefined, limitMs: number): Promise<Outcome> {
  const output = mkdtempSync(join(scratch, `${mode}-`));
  const env: NodeJS.ProcessEnv = { ...process.env, OMPI_MCA_btl_vader_single_copy_mechanism: 'none' };
  delete env.NODE_OPTIONS;
  const programArgs = [program, mode, output, backend, addonPath];
  const [command, args] =
    ranks === undefined
      ? [process.execPath, programArgs]
      : [mpirun as string, ['--allow-run-as-root', '--oversubscribe', '-np', String(ranks), process.execPath, ...programArgs]];
  const child = spawn(command, args, { cwd: packageDir, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const killer = setTimeout(() => child.kill('SIGTERM'), limitMs);
  const code = await new Promise<number | null>((done) => child.on('close', (exitCode) => done(exitCode)));
  clearTimeout(killer);
  let leftovers = processesWith(output);
  for (let attempt = 0; attempt < 20 && leftovers.length > 0; attempt++) {
    await new Promise((wait) => setTimeout(wait, 100));
    leftovers = processesWith(output);
  }
  const reports: Record<string, RunReport> = {};
  for (const file of readdirSync(output)) {
    reports[file.replace(/\.json$/, '')] = JSON.parse(readFileSync(join(output, file), 'utf8')) as RunReport;
  }
  return { code, stderr, reports, leftovers };
}

describe.skipIf(mpirun === undefined)(
  `DataParallelTrainer over MpiTransport on ${WORLD_SIZE} ranks${mpirun === undefined ? ` — SKIPPED: ${SKIP_REASON}` : ''}`,
  () => {
    beforeAll(async () => {
      expect(existsSync(addonPath), `the addon ${addonPath} is not built: run \`npm run build:native -w @mkor/mpi\` first`).toBe(true);
      const cache = join(packageDir, 'node_modules', '.cache');
      mkdirSync(cache, { recursive: true });
      scratch = mkdtempSync(join(cache, 'mpi-test-'));
      await build({
        config: false,
        entry: { 'rank-program': join(packageDir, 'test', 'rank-program.ts') },
        tsconfig: join(packageDir, 'test', 'tsconfig.json'),
        outDir: scratch,
        format: ['esm'],
        platform: 'node',
        target: 'node20',
        noExternal: [/^@mkor\//],
        external: [/^@tensorflow\//],
        silent: true,
        shims: true,
      });
      program = join(scratch, 'rank-program.js');
    });
    afterAll(() => rmSync(scratch, { recursive: true, force: true }));

    it('four processes on quarter batches follow one process on the full batch (MKOR, float32)', async () => {
      const [parallel, single] = await Promise.all([run('parallel', WORLD_SIZE, 240_000), run('single', undefined, 240_000)]);
      expect(parallel.code, parallel.stderr).toBe(0);
      expect(single.code, single.stderr).toBe(0);
      expect(parallel.leftovers).toEqual([]);
      const reference = single.reports.single as RunReport;
      const ranks = Array.from({ length: WORLD_SIZE }, (_, rank) => parallel.reports[`rank-${rank}`] as RunReport);
      for (const report of ranks) {
        expect(report.worldSize).toBe(WORLD_SIZE);
        // Ranks 1–3 were built from other seeds: syncWeights gave them rank 0's weights.
        expect(report.startedEqual).toBe(true);
        // Every rank holds the same bits: the reduced values are identical everywhere.
        expect(report.weights).toEqual(ranks[0]?.weights);
        expect(report.losses).toEqual(ranks[0]?.losses);
        report.losses.forEach((loss, step) => expect(Math.abs(loss - (reference.losses[step] as number))).toBeLessThanOrEqual(1e-5 * Math.abs(loss)));
      }
      // Weights against the single process: float32 rounding of differently ordered sums (MPI's
      // order, not rank order), as in the simulated-group test; see its tolerance note (observed
      // here ≈ 5e-7 relative, 5e-7 absolute).
      const toArrays = (weights: number[][]) => weights.map((w) => Float32Array.from(w));
      const distance = trajectoryDistance(toArrays(ranks[0]!.weights), toArrays(reference.weights), toArrays(reference.origin ?? []));
      expect(distance.relative).toBeLessThanOrEqual(1e-5);
      expect(distance.maxAbs).toBeLessThanOrEqual(2e-6);
    });

    it('a rank whose step throws: it reports its own error, the others a clear timeout error within the timeout', async () => {
      const job = await run('failing', WORLD_SIZE, 120_000);
      expect(job.leftovers).toEqual([]);
      const failing = job.reports['rank-2'] as RunReport;
      expect(failing.losses).toHaveLength(1);
      expect(failing.error?.message).toBe('rank 2 failed in its forward pass');
      // The first of them to time out leaves without MPI_Finalize, so mpirun ends the job: a rank
      // whose own timeout has not passed yet (a loaded machine starts step 1 later on some ranks)
      // learns of it as the SIGTERM abort instead. Either way within the timeout (plus jitter).
      const survivors = [0, 1, 3].map((rank) => job.reports[`rank-${rank}`] as RunReport);
      const timedOut = new RegExp(`could not all-reduce step 1: allReduce #\\d+ timed out after ${FAILING_TIMEOUT_MS} ms`);
      expect(survivors.some((report) => timedOut.test(report.error?.message ?? ''))).toBe(true);
      survivors.forEach((report, k) => {
        const rank = [0, 1, 3][k] as number;
        expect(report.losses).toHaveLength(1);
        expect(report.error?.name).toBe('Error');
        expect(report.error?.message).toMatch(new RegExp(`^DataParallelTrainer\\.step: rank ${rank} of 4 could not all-reduce step 1: `));
        expect(report.error?.message).toMatch(new RegExp(`${timedOut.source}|the group was aborted: received SIGTERM: mpirun is ending the job`));
        expect(report.error?.elapsedMs).toBeLessThan(FAILING_TIMEOUT_MS + 3_000);
      });
    });

    it('a rank that catches its step error and carries on: its next step is refused, the others fail within the timeout', async () => {
      const job = await run('carry-on', WORLD_SIZE, 120_000);
      expect(job.leftovers).toEqual([]);
      const failing = job.reports['rank-2'] as RunReport;
      expect(failing.losses).toHaveLength(1);
      expect(failing.error?.message).toMatch(
        /^DataParallelTrainer\.step: rank 2 refuses step 1: an earlier step failed here \(rank 2 failed in its forward pass\)/,
      );
      // Before, rank 2's step 2 joined the others' step 1 and the group ran on one batch out of
      // phase. Now the others wait for rank 2 in step 1 and fail as in the test above.
      [0, 1, 3].forEach((rank) => {
        const report = job.reports[`rank-${rank}`] as RunReport;
        expect(report.losses).toHaveLength(1);
        expect(report.error?.message).toMatch(new RegExp(`^DataParallelTrainer\\.step: rank ${rank} of 4 could not all-reduce step 1: `));
        expect(report.error?.elapsedMs).toBeLessThan(FAILING_TIMEOUT_MS + 3_000);
      });
    });
  },
);
