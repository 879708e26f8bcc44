/**
 * Tests of the worker_threads transport with real workers. Workers run TypeScript sources: each
 * starts `test/fixtures/boot.mjs`, which registers tsx's loader in the worker and imports the entry
 * named in `workerData` (Node 20 ignores `--import tsx` in a Worker's execArgv). The loader uses
 * `test/fixtures/tsconfig.workers.json`, whose `paths` send `@mkor/*` to the packages' sources, as
 * vitest's aliases do for the test thread (so a dist being rebuilt cannot break a worker).
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { allReduce64, allReduceErrorBound64, seededStream } from '@mkor/testing';
import { describe, expect, it } from 'vitest';

import { runScenario } from '../test/fixtures/scenarios';
import type { ReduceCase, Report, Scenario } from '../test/fixtures/scenarios';
import { reduceContributions } from './reduce';
import type { ReduceOp, WirePrecision } from './transport';
import { joinWorkerGroup, startWorkerGroup } from './worker-threads/index';
import type { WorkerExit, WorkerThreadsTransport } from './worker-threads/index';

const boot = new URL('../test/fixtures/boot.mjs', import.meta.url);
const entry = new URL('../test/fixtures/worker-entry.ts', import.meta.url).href;

/** Starts a group running `scenario`; resolves with every rank's report and the workers' exits. */
async function runGroup(
  worldSize: number,
  scenario: Scenario,
  options: { includeMainThread?: boolean; chunkBytes?: number } = {},
): Promise<{ reports: Report[]; exits: readonly WorkerExit[] }> {
  const group = startWorkerGroup({ worldSize, module: boot, workerData: { entry, scenario }, timeoutMs: 30_000, ...options });
  const reports = group.workers.map(
    ({ worker }) => new Promise<Report>((resolve) => worker.once('message', (report: Report) => resolve(report))),
  );
  const own = group.transport ? [runScenario(group.transport, scenario)] : [];
  const exits = await group.exited;
  const settled = await Promise.all([...own, ...reports.map((r, i) => (exits[i]?.exitCode === 0 ? r : undefined))]);
  return { reports: settled.filter((r): r is Report => r !== undefined).sort((a, b) => a.rank - b.rank), exits };
}

function randomCase(worldSize: number, length: number, op: ReduceOp, precision: WirePrecision, seed: number): ReduceCase {
  const next = seededStream(seed);
  const scale = [1e-3, 1, 300][seed % 3] as number;
  const contributions = Array.from({ length: worldSize }, () =>
    Array.from(Float32Array.from({ length }, () => next() * scale)),
  );
  return { op, precision, contributions };
}

function checkCollectives(worldSize: number, cases: ReduceCase[], reports: Report[]): void {
  expect(reports.map((r) => r.rank)).toEqual(Array.from({ length: worldSize }, (_, r) => r));
  cases.forEach((c, k) => {
    const contributions = c.contributions.map((x) => Float32Array.from(x));
    const exact = allReduce64(contributions, c.op);
    const bound = allReduceErrorBound64(contributions, c.op, c.precision);
    const expected = reduceContributions(contributions, c.op, c.precision);
    for (const report of reports) {
      const got = report.results?.[k] as Float32Array;
      expect(got.length).toBe(exact.length);
      got.forEach((x, i) => expect(Math.abs(x - (exact[i] as number))).toBeLessThanOrEqual(bound[i] as number));
      // same arithmetic in the same order as the in-process reference: bit-identical on every rank
      expect(Array.from(got)).toEqual(Array.from(expected));
    }
  });
  for (const report of reports) {
    expect(report.mismatch?.name).toBe('TransportMismatchError');
    expect(report.mismatch?.message).toBe(
      `allReduce #${cases.length}: ranks disagree: rank 0 sent 2 elements, rank ${worldSize - 1} sent 3`,
    );
    expect(Array.from(report.afterMismatch as Float32Array)).toEqual([(worldSize * (worldSize - 1)) / 2, worldSize]);
    expect(Array.from(report.broadcast as Float32Array)).toEqual([(worldSize - 1) * 10, 1, 2, 3, 4]);
    // mean of i + r over ranks r: i + (n − 1)/2, exact in float32 (halves of small integers)
    const meanRank = (worldSize - 1) / 2;
    expect(Array.from(report.bucketed?.a as Float32Array)).toEqual(Array.from({ length: 100 }, (_, i) => i + meanRank));
    expect(Array.from(report.bucketed?.b as Float32Array)).toEqual([meanRank]);
  }
}

describe('WorkerThreadsTransport', () => {
  it('all-reduces across 3 workers and the main thread: sum/mean, float32/float16, many chunks, all in flight', async () => {
    const worldSize = 4;
    const cases = [
      randomCase(worldSize, 1, 'sum', 'float32', 1),
      randomCase(worldSize, 777, 'mean', 'float32', 2),
      randomCase(worldSize, 500, 'sum', 'float16', 3),
      randomCase(worldSize, 333, 'mean', 'float16', 4),
      randomCase(worldSize, 0, 'sum', 'float32', 5),
      randomCase(worldSize, 64, 'mean', 'float32', 6),
    ];
    // 256-byte regions: 64 float32 or 128 float16 per round, so most cases take several rounds
    const { reports, exits } = await runGroup(worldSize, { kind: 'collectives', cases }, { includeMainThread: true, chunkBytes: 256 });
    expect(exits.map((e) => e.exitCode)).toEqual([0, 0, 0]);
    checkCollectives(worldSize, cases, reports);
  });

  it('all-reduces across 2 workers (the main thread only watches)', async () => {
    const cases = [randomCase(2, 1000, 'mean', 'float32', 7), randomCase(2, 1000, 'sum', 'float16', 8)];
    const { reports, exits } = await runGroup(2, { kind: 'collectives', cases });
    expect(exits.map((e) => [e.rank, e.exitCode])).toEqual([[0, 0], [1, 0]]);
    checkCollectives(2, cases, reports);
  });

  it('times out naming a rank that never calls; the others fail at once instead of hanging', async () => {
    const { reports } = await runGroup(3, { kind: 'silent', silentRank: 2, holdMs: 2_500 }, { includeMainThread: true });
    const [zero, one, two] = reports as [Report, Report, Report];
    expect(zero.errors?.[0]).toMatchObject({
      name: 'TransportTimeoutError',
      message: 'allReduce #1: timed out after 1000 ms waiting for rank(s) 2',
      missingRanks: [2],
    });
    expect(zero.errors?.[0]?.elapsedMs).toBeGreaterThanOrEqual(1_000);
    expect(zero.errors?.[0]?.elapsedMs).toBeLessThan(2_500); // before the silent rank wakes up
    const aborted = {
      name: 'TransportAbortedError',
      message: 'allReduce: the group was aborted: rank 0 timed out in allReduce #1 waiting for rank(s) 2',
      ranks: [2],
    };
    expect(one.errors?.[0]).toMatchObject(aborted); // although its own timeout was 20 s
    expect(one.errors?.[0]?.elapsedMs).toBeLessThan(10_000);
    expect(zero.errors?.[1]).toMatchObject(aborted);
    expect(one.errors?.[1]).toMatchObject(aborted);
    expect(two.errors?.[0]).toMatchObject(aborted); // the late rank learns it too
  });

  it('fails the others with a clear error when a worker exits; a rank that slept through the last round still completes it', async () => {
    const { reports, exits } = await runGroup(3, { kind: 'exit', exitingRank: 1, slowRank: 2, holdMs: 1_000 });
    expect(exits.map((e) => [e.exitCode, e.error === undefined ? undefined : String(e.error)])).toEqual([
      [0, undefined],
      [3, undefined],
      [0, undefined],
    ]);
    expect(reports.map((r) => r.rank)).toEqual([0, 2]);
    for (const report of reports) {
      expect(Array.from(report.results?.[0] as Float32Array)).toEqual([3]);
      expect(report.errors?.[0]).toMatchObject({
        name: 'TransportAbortedError',
        message: 'allReduce: the group was aborted: rank 1 exited with code 3 before joining allReduce #2',
        ranks: [1],
      });
      expect(report.errors?.[0]?.elapsedMs).toBeLessThan(15_000); // well before its 20 s timeout
    }
  });

  it('shuts down cleanly: close() terminates a lingering worker and the process exits by itself', async () => {
    const program = fileURLToPath(new URL('../test/fixtures/group-main.ts', import.meta.url));
    const { code, stdout } = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
      const tsconfig = fileURLToPath(new URL('../test/fixtures/tsconfig.workers.json', import.meta.url));
      const env = { ...process.env, TSX_TSCONFIG_PATH: tsconfig };
      const child = execFile(process.execPath, ['--import', 'tsx', program], { timeout: 60_000, env }, (error, out) =>
        resolve({ code: error ? (error.code as number | null) ?? -1 : 0, stdout: out }),
      );
      child.stdin?.end();
    });
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual({ sum: [3, 6], exits: [{ rank: 1, exitCode: 1 }, { rank: 2, exitCode: 0 }] });
  });

  it('validates its options and refuses to join outside a group', () => {
    const module = boot;
    expect(() => startWorkerGroup({ worldSize: 0, module })).toThrow(/^startWorkerGroup: worldSize must be an integer in \[1, ∞\), got 0/);
    expect(() => startWorkerGroup({ worldSize: 2, module, chunkBytes: 100 })).toThrow(
      /^startWorkerGroup: chunkBytes must be a multiple of 8, got 100/,
    );
    expect(() => startWorkerGroup({ worldSize: 2, module, timeoutMs: 0 })).toThrow(/^startWorkerGroup: timeoutMs/);
    expect(() => startWorkerGroup({ worldSize: 2, module, spin: 'yes' as unknown as boolean })).toThrow(
      /^startWorkerGroup: spin must be true, false or 'auto', got yes/,
    );
    expect(() => joinWorkerGroup()).toThrow('joinWorkerGroup: this thread was not started by startWorkerGroup');
  });

  it('a group of one (the main thread alone) runs every collective and rejects bad calls', async () => {
    const group = startWorkerGroup({ worldSize: 1, module: boot, includeMainThread: true, chunkBytes: 64 });
    const t = group.transport as WorkerThreadsTransport;
    const x = Float32Array.from({ length: 100 }, (_, i) => i / 3);
    expect(Array.from(await t.allReduce(x, { op: 'mean' }))).toEqual(Array.from(x));
    expect(Array.from(await t.allReduce(x, { precision: 'float16' }))).toEqual(Array.from(reduceContributions([x], 'sum', 'float16')));
    expect(Array.from(await t.broadcast(x, 0))).toEqual(Array.from(x));
    await expect(t.allReduce([1] as unknown as Float32Array)).rejects.toThrow(
      /^WorkerThreadsTransport\.allReduce: buffer must be a Float32Array, got Array/,
    );
    await expect(t.broadcast(x, 1)).rejects.toThrow(/^WorkerThreadsTransport\.broadcast: root must be an integer in \[0, 0\]/);
    await expect(t.barrier({ timeoutMs: -5 })).rejects.toThrow(/^WorkerThreadsTransport\.barrier: timeoutMs/);
    const pending = t.barrier(); // queued: close() rejects calls not yet complete
    await group.close();
    await expect(pending).rejects.toThrow('barrier: the transport of rank 0 is closed');
    await expect(t.allReduce(x)).rejects.toThrow('allReduce: the transport of rank 0 is closed');
    expect(await group.exited).toEqual([]);
  });
});
