import { allReduce64, allReduceErrorBound64, seededStream } from '@mkor/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { InProcessTransport, createSimulatedGroup } from './in-process';
import type { SimulatedTransport } from './in-process';
import { reduceContributions } from './reduce';
import {
  TransportAbortedError,
  TransportClosedError,
  TransportMismatchError,
  TransportTimeoutError,
} from './transport';
import type { ReduceOp, WirePrecision } from './transport';

/** Per-rank contributions: `worldSize` arrays of `length` float32 values in ±scale. */
const contributionsArbitrary = fc
  .record({
    worldSize: fc.integer({ min: 1, max: 6 }),
    length: fc.integer({ min: 0, max: 300 }),
    scale: fc.constantFrom(1e-3, 1, 1e3),
    seed: fc.integer(),
  })
  .map(({ worldSize, length, scale, seed }) => {
    const next = seededStream(seed);
    return Array.from({ length: worldSize }, () => Float32Array.from({ length }, () => next() * scale));
  });

/** Asserts |actual − exact| ≤ bound element-wise (float64 reference and bound from @mkor/testing). */
function expectWithinBound(actual: Float32Array, contributions: Float32Array[], op: ReduceOp, precision: WirePrecision): void {
  const exact = allReduce64(contributions, op);
  const bound = allReduceErrorBound64(contributions, op, precision);
  expect(actual.length).toBe(exact.length);
  for (let i = 0; i < actual.length; i++) {
    expect(Math.abs((actual[i] as number) - (exact[i] as number))).toBeLessThanOrEqual(bound[i] as number);
  }
}

describe('reduceContributions', () => {
  it('sums and averages within the float32 summation bound of the float64 reduction (property)', () => {
    fc.assert(
      fc.property(contributionsArbitrary, fc.constantFrom<ReduceOp>('sum', 'mean'), (contributions, op) => {
        expectWithinBound(reduceContributions(contributions, op, 'float32'), contributions, op, 'float32');
      }),
      { numRuns: 60 },
    );
  });

  it('with float16 on the wire, stays within the half-precision bound 2⁻¹¹·Σ|x| (+ float32 summation)', () => {
    fc.assert(
      fc.property(contributionsArbitrary, fc.constantFrom<ReduceOp>('sum', 'mean'), (contributions, op) => {
        const reduced = reduceContributions(contributions, op, 'float16');
        expectWithinBound(reduced, contributions, op, 'float16');
        // and it is the float32 sum of the float16-rounded values: compare with that float64 reference
        const ofRounded = allReduce64(contributions, op, 'float16');
        const summationOnly = allReduceErrorBound64(contributions, op, 'float32');
        for (let i = 0; i < reduced.length; i++) {
          expect(Math.abs((reduced[i] as number) - (ofRounded[i] as number))).toBeLessThanOrEqual(
            (summationOnly[i] as number) * (1 + 2 ** -11) + 1e-30,
          );
        }
      }),
      { numRuns: 60 },
    );
  });

  it('does not modify its inputs and rejects unequal lengths', () => {
    const a = Float32Array.from([1, 2, 3]);
    const b = Float32Array.from([0.1, 0.2, 0.3]);
    reduceContributions([a, b], 'mean', 'float16');
    expect(Array.from(a)).toEqual([1, 2, 3]);
    expect(Array.from(b)).toEqual(Array.from(Float32Array.from([0.1, 0.2, 0.3])));
    expect(() => reduceContributions([a, new Float32Array(2)], 'sum', 'float32')).toThrow(
      /^reduceContributions: contributions must have equal lengths, got 3 and 2/,
    );
  });
});

describe('InProcessTransport', () => {
  it('is the identity (a new array) for float32 and the float16 rounding for float16', async () => {
    const t = new InProcessTransport();
    const x = Float32Array.from([1, 1 / 3, -65519, 1e-8]);
    const sum = await t.allReduce(x);
    expect(sum).not.toBe(x);
    expect(Array.from(sum)).toEqual(Array.from(x));
    expect(Array.from(await t.allReduce(x, { op: 'mean' }))).toEqual(Array.from(x));
    const half = await t.allReduce(x, { precision: 'float16' });
    // float16 values of 1, 1/3, −65519 and 1e−8: 1, 0.333251953125, −65504, 0 (1e−8 < 2⁻²⁵)
    expect(Array.from(half)).toEqual([1, 0.333251953125, -65504, 0]);
    expect(Array.from(await t.broadcast(x, 0))).toEqual(Array.from(x));
    await expect(t.barrier()).resolves.toBeUndefined();
    expect([t.rank, t.worldSize]).toEqual([0, 1]);
  });

  it('rejects bad input with messages naming the method', async () => {
    const t = new InProcessTransport();
    await expect(t.allReduce([1, 2] as unknown as Float32Array)).rejects.toThrow(
      /^InProcessTransport\.allReduce: buffer must be a Float32Array, got Array/,
    );
    await expect(t.allReduce(new Float32Array(1), { op: 'max' as ReduceOp })).rejects.toThrow(
      /^InProcessTransport\.allReduce: op must be one of 'sum', 'mean', got max/,
    );
    await expect(t.allReduce(new Float32Array(1), { precision: 'int8' as WirePrecision })).rejects.toThrow(
      /precision must be one of 'float32', 'float16'/,
    );
    await expect(t.allReduce(new Float32Array(1), { timeoutMs: -1 })).rejects.toThrow(/timeoutMs must be \(0, ∞\)/);
    await expect(t.broadcast(new Float32Array(1), 1)).rejects.toThrow(/^InProcessTransport\.broadcast: root must be an integer in \[0, 0\], got 1/);
    expect(() => new InProcessTransport({ timeoutMs: 0 })).toThrow(/^InProcessTransport: timeoutMs/);
    await t.close();
    await expect(t.allReduce(new Float32Array(1))).rejects.toBeInstanceOf(TransportClosedError);
  });
});

describe('createSimulatedGroup', () => {
  it('all-reduces among its ranks, bit-identically on every rank, within the float32 bound (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        contributionsArbitrary,
        fc.constantFrom<ReduceOp>('sum', 'mean'),
        fc.constantFrom<WirePrecision>('float32', 'float16'),
        async (contributions, op, precision) => {
          const group = createSimulatedGroup(contributions.length);
          const results = await Promise.all(group.map((t, r) => t.allReduce(contributions[r] as Float32Array, { op, precision })));
          for (const result of results) expect(Array.from(result)).toEqual(Array.from(results[0] as Float32Array));
          expectWithinBound(results[0] as Float32Array, contributions, op, precision);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('pairs the k-th calls of every rank, with several calls in flight', async () => {
    const [a, b, c] = createSimulatedGroup(3) as [SimulatedTransport, SimulatedTransport, SimulatedTransport];
    const onRank = (r: number): Promise<Float32Array>[] => {
      const t = [a, b, c][r] as SimulatedTransport;
      return [1, 2, 3, 4].map((k) => t.allReduce(Float32Array.from([k * 10 + r, k])));
    };
    // rank 2 starts its calls late, and all calls are in flight at once
    const early = [onRank(0), onRank(1)];
    await new Promise((resolve) => setTimeout(resolve, 5));
    const all = await Promise.all([...early, onRank(2)].map((calls) => Promise.all(calls)));
    for (const results of all) {
      expect(results.map((x) => Array.from(x))).toEqual([1, 2, 3, 4].map((k) => [30 * k + 3, 3 * k]));
    }
  });

  it('broadcasts from the root and meets at barriers', async () => {
    const group = createSimulatedGroup(3);
    const sent = group.map((t) => Float32Array.from([t.rank, 7]));
    const received = await Promise.all(group.map((t, r) => t.broadcast(sent[r] as Float32Array, 2)));
    for (const x of received) expect(Array.from(x)).toEqual([2, 7]);
    let passed = 0;
    const barriers = group.slice(0, 2).map((t) => t.barrier().then(() => (passed += 1)));
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(passed).toBe(0); // rank 2 has not arrived
    await Promise.all([...barriers, (group[2] as SimulatedTransport).barrier()]);
    expect(passed).toBe(2);
  });

  it('rejects mismatched lengths, ops and kinds on every rank and stays usable', async () => {
    const [a, b] = createSimulatedGroup(2) as [SimulatedTransport, SimulatedTransport];
    const lengths = await Promise.allSettled([a.allReduce(new Float32Array(4)), b.allReduce(new Float32Array(5))]);
    for (const outcome of lengths) {
      expect(outcome.status).toBe('rejected');
      const error = (outcome as PromiseRejectedResult).reason;
      expect(error).toBeInstanceOf(TransportMismatchError);
      expect(error.message).toBe('allReduce #0: ranks disagree: rank 0 sent 4 elements, rank 1 sent 5');
    }
    const ops = await Promise.allSettled([a.allReduce(new Float32Array(1)), b.allReduce(new Float32Array(1), { op: 'mean' })]);
    expect(ops.map((o) => (o as PromiseRejectedResult).reason?.message)).toEqual([
      "allReduce #1: ranks disagree: rank 0 asked for op 'sum', rank 1 for 'mean'",
      "allReduce #1: ranks disagree: rank 0 asked for op 'sum', rank 1 for 'mean'",
    ]);
    const kinds = await Promise.allSettled([a.barrier(), b.broadcast(new Float32Array(0), 0)]);
    expect(kinds.every((o) => o.status === 'rejected' && o.reason instanceof TransportMismatchError)).toBe(true);
    const ok = await Promise.all([a.allReduce(Float32Array.from([1])), b.allReduce(Float32Array.from([2]))]);
    expect(ok.map((x) => x[0])).toEqual([3, 3]);
  });

  it('times out naming the ranks that never called, then aborts the group for everyone', async () => {
    const [a, b, c] = createSimulatedGroup(3, { timeoutMs: 10_000 }) as [SimulatedTransport, SimulatedTransport, SimulatedTransport];
    const waitingB = b.allReduce(new Float32Array(2));
    const start = performance.now();
    const error = await a.allReduce(new Float32Array(2), { timeoutMs: 50 }).catch((e: unknown) => e);
    expect(performance.now() - start).toBeLessThan(2_000);
    expect(error).toBeInstanceOf(TransportTimeoutError);
    expect((error as TransportTimeoutError).missingRanks).toEqual([2]);
    expect((error as Error).message).toBe('allReduce #0: timed out after 50 ms waiting for rank(s) 2');
    const other = await waitingB.catch((e: unknown) => e);
    expect(other).toBeInstanceOf(TransportAbortedError);
    expect((other as TransportAbortedError).ranks).toEqual([2]);
    expect((other as Error).message).toBe(
      'allReduce: the group was aborted: rank 0 timed out in allReduce #0 waiting for rank(s) 2',
    );
    await expect(c.allReduce(new Float32Array(2))).rejects.toBeInstanceOf(TransportAbortedError);
  });

  it('close rejects the rank’s pending calls and aborts ranks left waiting for it', async () => {
    const [a, b] = createSimulatedGroup(2) as [SimulatedTransport, SimulatedTransport];
    const pending = a.allReduce(new Float32Array(1));
    await b.close();
    const error = await pending.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportAbortedError);
    expect((error as Error).message).toBe('allReduce: the group was aborted: rank 1 closed before joining collective #0');
    await expect(b.allReduce(new Float32Array(1))).rejects.toThrow('allReduce: the transport of rank 1 is closed');
    const [c, d] = createSimulatedGroup(2) as [SimulatedTransport, SimulatedTransport];
    const own = c.barrier();
    await c.close();
    await expect(own).rejects.toBeInstanceOf(TransportClosedError);
    await d.close();
  });

  it('validates worldSize and options', () => {
    expect(() => createSimulatedGroup(0)).toThrow(/^createSimulatedGroup: worldSize must be an integer in \[1, ∞\), got 0/);
    expect(() => createSimulatedGroup(2, { timeoutMs: Number.NaN })).toThrow(/^createSimulatedGroup: timeoutMs/);
  });
});
