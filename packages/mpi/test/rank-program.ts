/**
 * The program each rank runs under `mpirun` in `src/mpi-transport.test.ts` (bundled first):
 * `node rank-program.mjs <scenario> <output folder>`. Each rank appends one JSON object per line
 * (`{ rank, id, ... }`) to `<output folder>/rank-<rank>.jsonl` (mpirun would interleave long
 * stdout lines of different ranks); the test recomputes the expected values in float64. The
 * folder's unique name also tags the command line, so the test can look for leftover processes.
 */
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';

import type { CollectiveOptions } from '@mkor/allreduce';

import { MpiTransport } from '../src/index';
import { contribution, encodeResult, float16ProbeBuffer } from './fixtures';

const [scenario, outputFolder] = process.argv.slice(2);

function emit(rank: number, id: string, fields: Record<string, unknown> = {}): void {
  appendFileSync(join(outputFolder as string, `rank-${rank}.jsonl`), `${JSON.stringify({ rank, id, ...fields })}\n`);
}

function describeError(error: unknown): { name: string; message: string } {
  return error instanceof Error ? { name: error.name, message: error.message } : { name: 'unknown', message: String(error) };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs `call` and emits its result or error under `id`, with the elapsed milliseconds. */
async function record(rank: number, id: string, call: () => Promise<Float32Array | void>): Promise<void> {
  const started = performance.now();
  try {
    const result = await call();
    emit(rank, id, {
      ok: true,
      elapsedMs: performance.now() - started,
      ...(result instanceof Float32Array ? { result: encodeResult(result) } : {}),
    });
  } catch (error) {
    emit(rank, id, { ok: false, elapsedMs: performance.now() - started, ...describeError(error) });
  }
}

/** All-reduces of every op and precision for a few lengths, and the float16 rounding probe. */
async function allReduces(transport: MpiTransport): Promise<void> {
  const { rank } = transport;
  for (const length of [1, 7, 1000, 4099]) {
    for (const op of ['sum', 'mean'] as const) {
      for (const precision of ['float32', 'float16'] as const) {
        const input = contribution(rank, length, length);
        const copy = Float32Array.from(input);
        await record(rank, `allReduce/${op}/${precision}/${length}`, () =>
          transport.allReduce(input, { op, precision }),
        );
        if (input.some((value, i) => !Object.is(value, copy[i]))) emit(rank, 'input-modified', { length });
      }
    }
  }

  // float16 rounding alone: rank 0 contributes the probes, the others zeros.
  const probes = float16ProbeBuffer(2000);
  await record(rank, 'float16-rounding', () =>
    transport.allReduce(rank === 0 ? probes : new Float32Array(probes.length), { precision: 'float16' }),
  );
}

/** All-reduces, calls in flight, broadcasts, a barrier, bad arguments, mismatches, close. */
async function correctness(): Promise<void> {
  const transport = await MpiTransport.create({ timeoutMs: 30_000 });
  const { rank, worldSize } = transport;
  emit(rank, 'info', { worldSize, threadLevel: transport.threadLevel, libraryVersion: transport.libraryVersion });
  await allReduces(transport);

  // Eight calls in flight at once, of mixed kinds and sizes.
  const inFlight: [string, () => Promise<Float32Array | void>][] = [
    ['flight/allReduce/sum/3', () => transport.allReduce(contribution(rank, 3, 3))],
    ['flight/broadcast/2/5', () => transport.broadcast(contribution(rank, 5, 5), 2)],
    ['flight/allReduce/mean/4099', () => transport.allReduce(contribution(rank, 4099, 4099), { op: 'mean' })],
    ['flight/barrier', () => transport.barrier()],
    ['flight/allReduce/sum/0', () => transport.allReduce(new Float32Array(0))],
    ['flight/allReduce/float16/100', () => transport.allReduce(contribution(rank, 100, 100), { precision: 'float16' })],
    ['flight/broadcast/0/1', () => transport.broadcast(contribution(rank, 1, 1), 0)],
    ['flight/allReduce/sum/70000', () => transport.allReduce(contribution(rank, 70000, 70000))],
  ];
  await Promise.all(inFlight.map(([id, call]) => record(rank, id, call)));

  for (let root = 0; root < worldSize; root++) {
    await record(rank, `broadcast/${root}`, () => transport.broadcast(contribution(rank, 11, 11), root));
  }

  // The last rank reaches the barrier 300 ms late; the others' event loops keep running meanwhile.
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 10);
  if (rank === worldSize - 1) await sleep(300);
  await record(rank, 'barrier', () => transport.barrier());
  clearInterval(ticker);
  emit(rank, 'barrier-ticks', { ticks });

  // Bad arguments are rejected on the calling rank before anything reaches MPI.
  const notFloat32 = [1, 2] as unknown as Float32Array;
  await record(rank, 'bad/buffer', () => transport.allReduce(notFloat32));
  await record(rank, 'bad/root', () => transport.broadcast(new Float32Array(2), worldSize));
  await record(rank, 'bad/timeout', () => transport.barrier({ timeoutMs: 0 }));
  await record(rank, 'bad/op', () => transport.allReduce(new Float32Array(2), { op: 'max' as 'sum' }));

  // Mismatches: every rank gets the error and the group stays usable.
  await record(rank, 'mismatch/length', () => transport.allReduce(new Float32Array(rank === 1 ? 12 : 10)));
  await record(rank, 'mismatch/kind', () =>
    rank === 0 ? transport.broadcast(new Float32Array(10), 0) : transport.allReduce(new Float32Array(10)),
  );
  const options: CollectiveOptions = { op: rank === 2 ? 'mean' : 'sum' };
  await record(rank, 'mismatch/op', () => transport.allReduce(new Float32Array(10), options));
  await record(rank, 'mismatch/root', () => transport.broadcast(new Float32Array(10), rank === 3 ? 1 : 0));
  await record(rank, 'after-mismatch', () => transport.allReduce(contribution(rank, 9, 9)));

  await transport.close();
  await record(rank, 'after-close', () => transport.barrier());
  emit(rank, 'done');
}

/** The 'half' float16 wire format, without agreement checks. */
async function halfWire(): Promise<void> {
  const transport = await MpiTransport.create({ timeoutMs: 30_000, float16Wire: 'half', checkAgreement: false });
  await allReduces(transport);
  await transport.close();
  emit(transport.rank, 'done');
}

/** The last rank leaves (MPI_Finalize, exit 0) while the others wait for it in an all-reduce. */
async function earlyExit(): Promise<void> {
  const transport = await MpiTransport.create({ timeoutMs: 30_000 });
  const { rank, worldSize } = transport;
  await transport.barrier();
  if (rank === worldSize - 1) {
    await transport.close();
    emit(rank, 'left');
    return;
  }
  await record(rank, 'waiting', () => transport.allReduce(contribution(rank, 1, 64), { timeoutMs: 1500 }));
  await record(rank, 'after-timeout', () => transport.allReduce(contribution(rank, 1, 64)));
  await transport.close();
  emit(rank, 'done');
}

/** The last rank is killed (SIGKILL) while the others wait for it in an all-reduce. */
async function crash(): Promise<void> {
  const transport = await MpiTransport.create({ timeoutMs: 30_000 });
  const { rank, worldSize } = transport;
  await transport.barrier();
  if (rank === worldSize - 1) {
    await sleep(200);
    process.kill(process.pid, 'SIGKILL');
    return;
  }
  emit(rank, 'waiting-started');
  await record(rank, 'waiting', () => transport.allReduce(contribution(rank, 1, 64)));
}

/** How the last rank dies in the `dies-<how>` scenarios. */
const DEATHS: Record<string, () => void> = {
  'uncaught-exception': () => {
    setTimeout(() => {
      throw new Error('injected failure in the step');
    }, 0);
  },
  'unhandled-rejection': () => {
    void Promise.reject(new Error('injected rejection in the step'));
  },
  'exit-code': () => process.exit(3),
};

/**
 * The last rank dies through its own process-exit path (`how`: an uncaught exception, an unhandled
 * rejection, or `process.exit(3)`) while the others wait for it in an all-reduce (timeout 30 s).
 */
async function dies(how: string): Promise<void> {
  const death = DEATHS[how];
  if (death === undefined) throw new Error(`rank-program: unknown death ${how}`);
  const transport = await MpiTransport.create({ timeoutMs: 30_000 });
  const { rank, worldSize } = transport;
  await transport.barrier();
  if (rank === worldSize - 1) {
    await sleep(200);
    death();
    return;
  }
  emit(rank, 'waiting-started');
  await record(rank, 'waiting', () => transport.allReduce(contribution(rank, 1, 64)));
}

if (scenario === 'correctness') {
  await correctness();
} else if (scenario === 'half-wire') {
  await halfWire();
} else if (scenario === 'early-exit') {
  await earlyExit();
} else if (scenario === 'crash') {
  await crash();
} else if (scenario?.startsWith('dies-') === true) {
  await dies(scenario.slice('dies-'.length));
} else {
  throw new Error(`rank-program: unknown scenario ${String(scenario)}`);
}
