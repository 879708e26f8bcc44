import { allReduce64, allReduceErrorBound64 } from '@mkor/testing';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import {
  BucketLayoutMismatchError,
  LAYOUT_CHECK_ELEMENTS,
  allReduceTensors,
  bucketedAllReduce,
  planBuckets,
} from './bucket';
import { createSimulatedGroup } from './in-process';
import type { SimulatedTransport } from './in-process';
import { TransportMismatchError } from './transport';
import type { CollectiveOptions, ReduceOp, Transport, WirePrecision } from './transport';

/** Names and lengths of one step's vectors (MKOR: `a` and `g` per layer). */
const layoutArbitrary = fc.dictionary(
  fc.string({ minLength: 1, maxLength: 8 }),
  fc.integer({ min: 0, max: 200 }),
  { maxKeys: 12 },
);

/** A transport that counts its collectives and their sizes, around another. */
function counting(inner: Transport): Transport & { calls: number[] } {
  const calls: number[] = [];
  return {
    rank: inner.rank,
    worldSize: inner.worldSize,
    calls,
    allReduce: (buffer: Float32Array, options?: CollectiveOptions) => {
      calls.push(buffer.length);
      return inner.allReduce(buffer, options);
    },
    broadcast: (buffer, root, options) => inner.broadcast(buffer, root, options),
    barrier: (options) => inner.barrier(options),
    close: () => inner.close(),
  };
}

function vectorsFor(layout: Record<string, number>, rank: number): Record<string, Float32Array> {
  const vectors: Record<string, Float32Array> = {};
  Object.entries(layout).forEach(([name, length], k) => {
    vectors[name] = Float32Array.from({ length }, (_, i) => Math.sin(1 + 7 * i + 13 * k + 101 * rank) * (k + 1));
  });
  return vectors;
}

describe('planBuckets', () => {
  it('sorts names by code units, packs them contiguously after the layout check, in buckets of at most bucketBytes', () => {
    fc.assert(
      fc.property(layoutArbitrary, fc.integer({ min: 64, max: 200 }), (layout, bucketWords) => {
        const plan = planBuckets(layout, bucketWords * 4);
        const names = Object.keys(layout);
        expect(plan.names).toEqual([...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
        let offset = LAYOUT_CHECK_ELEMENTS;
        for (const name of plan.names) {
          expect(plan.offsets.get(name)).toBe(offset);
          offset += layout[name] as number;
        }
        expect(plan.totalLength).toBe(offset);
        expect(plan.buckets[0]?.[0]).toBe(0);
        plan.buckets.forEach(([start, end], i) => {
          expect(end - start).toBeGreaterThan(0);
          expect(end - start).toBeLessThanOrEqual(bucketWords);
          if (i > 0) expect(start).toBe(plan.buckets[i - 1]?.[1]);
        });
        expect(plan.buckets.at(-1)?.[1]).toBe(offset);
        expect(plan.buckets.length).toBe(Math.ceil(offset / bucketWords));
      }),
      { numRuns: 100 },
    );
  });

  it('rejects bad sizes', () => {
    expect(() => planBuckets({ a: 1 }, 100)).toThrow(/^planBuckets: bucketBytes must be an integer in \[256, ∞\), got 100/);
    expect(() => planBuckets({ a: 1 }, 258)).toThrow(/^planBuckets: bucketBytes must be a multiple of 4, got 258/);
    expect(() => planBuckets({ a: -1 })).toThrow(/^planBuckets: length of 'a' must be an integer in \[0, ∞\), got -1/);
  });
});

describe('bucketedAllReduce', () => {
  it('round-trips every vector through few messages, matching the float64 reduction (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        layoutArbitrary,
        fc.integer({ min: 1, max: 4 }),
        fc.constantFrom<ReduceOp>('sum', 'mean'),
        fc.constantFrom<WirePrecision>('float32', 'float16'),
        async (layout, worldSize, op, precision) => {
          const group = createSimulatedGroup(worldSize).map(counting);
          const inputs = group.map((t) => vectorsFor(layout, t.rank));
          const bucketBytes = 1024;
          const results = await Promise.all(group.map((t, r) => bucketedAllReduce(t, inputs[r]!, { op, precision, bucketBytes })));
          const names = Object.keys(layout).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
          for (const result of results) expect(Object.keys(result).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))).toEqual(names);
          for (const name of names) {
            const contributions = inputs.map((v) => v[name] as Float32Array);
            const exact = allReduce64(contributions, op);
            const bound = allReduceErrorBound64(contributions, op, precision);
            for (const result of results) {
              const got = result[name] as Float32Array;
              expect(got).not.toBe(inputs[0]![name]);
              expect(Array.from(got)).toEqual(Array.from(results[0]![name] as Float32Array));
              got.forEach((x, i) => expect(Math.abs(x - (exact[i] as number))).toBeLessThanOrEqual(bound[i] as number));
            }
          }
          const total = LAYOUT_CHECK_ELEMENTS + Object.values(layout).reduce((s, n) => s + n, 0);
          expect(group[0]!.calls.length).toBe(Math.ceil(total / (bucketBytes / 4)));
          expect(group[0]!.calls.every((n) => n <= bucketBytes / 4)).toBe(true);
        },
      ),
      { numRuns: 40 },
    );
  });

  it("packs MKOR's per-layer vectors (32 layers) into one message by default and leaves the inputs untouched", async () => {
    const layout: Record<string, number> = {};
    for (let layer = 0; layer < 32; layer++) Object.assign(layout, { [`layer${layer}/a`]: 65, [`layer${layer}/g`]: 64 });
    const group = createSimulatedGroup(2).map(counting);
    const inputs = group.map((t) => vectorsFor(layout, t.rank));
    const copies = inputs.map((v) => Object.fromEntries(Object.entries(v).map(([k, x]) => [k, Float32Array.from(x)])));
    await Promise.all(group.map((t, r) => bucketedAllReduce(t, inputs[r]!, { op: 'mean' })));
    expect(group.map((t) => t.calls)).toEqual([[LAYOUT_CHECK_ELEMENTS + 32 * 129], [LAYOUT_CHECK_ELEMENTS + 32 * 129]]);
    expect(inputs).toEqual(copies);
  });

  it('detects layouts that differ across ranks on every rank, and the group stays usable', async () => {
    const group = createSimulatedGroup(3);
    const layouts = [
      { 'x/a': 3, 'x/g': 2 },
      { 'x/a': 3, 'x/g': 2 },
      { 'x/a': 2, 'x/g': 3 }, // same total length, other split
    ];
    const outcomes = await Promise.allSettled(group.map((t, r) => bucketedAllReduce(t, vectorsFor(layouts[r]!, r))));
    outcomes.forEach((outcome, r) => {
      expect(outcome.status).toBe('rejected');
      const error = (outcome as PromiseRejectedResult).reason as Error;
      expect(error).toBeInstanceOf(BucketLayoutMismatchError);
      const sent = r === 2 ? 'x/a[2], x/g[3]' : 'x/a[3], x/g[2]';
      expect(error.message).toBe(
        `bucketedAllReduce: ranks sent different layouts (names or lengths); rank ${r} sent 2 vector(s): ${sent}`,
      );
    });
    const renamed = await Promise.allSettled(
      group.map((t, r) => bucketedAllReduce(t, { [r === 1 ? 'b' : 'a']: new Float32Array(4) })),
    );
    expect(renamed.every((o) => o.status === 'rejected' && o.reason instanceof BucketLayoutMismatchError)).toBe(true);
    const longer = await Promise.allSettled(
      group.map((t, r) => bucketedAllReduce(t, { a: new Float32Array(r === 0 ? 5 : 4) })),
    );
    expect(longer.every((o) => o.status === 'rejected' && o.reason instanceof TransportMismatchError)).toBe(true);
    const ok = await Promise.all(group.map((t) => bucketedAllReduce(t, { a: Float32Array.from([1, 2]) })));
    for (const result of ok) expect(Array.from(result.a as Float32Array)).toEqual([3, 6]);
  });

  it('rejects bad input with messages naming the function', async () => {
    const [t] = createSimulatedGroup(1) as [SimulatedTransport];
    await expect(bucketedAllReduce(t, { a: [1] as unknown as Float32Array })).rejects.toThrow(
      /^bucketedAllReduce: vectors\['a'\] must be a Float32Array, got Array/,
    );
    await expect(bucketedAllReduce(t, null as unknown as Record<string, Float32Array>)).rejects.toThrow(
      /^bucketedAllReduce: vectors must be a record/,
    );
    await expect(bucketedAllReduce(t, {}, { bucketBytes: 8 })).rejects.toThrow(/^bucketedAllReduce: bucketBytes/);
    await expect(bucketedAllReduce(t, {}, { op: 'max' as ReduceOp })).rejects.toThrow(/^bucketedAllReduce: op/);
  });
});

describe('allReduceTensors', () => {
  it('returns new tensors of the same shapes with the mean, leaks nothing and disposes no input', async () => {
    const group = createSimulatedGroup(2);
    const before = tf.memory().numTensors;
    const inputs = group.map((t) => ({
      'dense/a': tf.tensor1d([1 + t.rank, 2, 3]),
      'dense/g': tf.tensor2d([[t.rank * 4, 1], [0.5, -2]]),
    }));
    const results = await Promise.all(group.map((t, r) => allReduceTensors(t, inputs[r]!, { op: 'mean' })));
    for (const result of results) {
      expect(result['dense/a']!.shape).toEqual([3]);
      expect(result['dense/g']!.shape).toEqual([2, 2]);
      expect(Array.from(result['dense/a']!.dataSync())).toEqual([1.5, 2, 3]);
      expect(Array.from(result['dense/g']!.dataSync())).toEqual([2, 1, 0.5, -2]);
    }
    for (const input of inputs) for (const tensor of Object.values(input)) expect(tensor.isDisposed).toBe(false);
    expect(tf.memory().numTensors).toBe(before + 8);
    for (const map of [...inputs, ...results]) for (const tensor of Object.values(map)) tensor.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects tensors that are not float32, disposed, or not tensors', async () => {
    const [t] = createSimulatedGroup(1) as [SimulatedTransport];
    const before = tf.memory().numTensors;
    const ints = tf.tensor1d([1, 2], 'int32');
    await expect(allReduceTensors(t, { ints })).rejects.toThrow(
      /^allReduceTensors: tensors\['ints'\] must have dtype float32, got int32/,
    );
    ints.dispose();
    await expect(allReduceTensors(t, { ints })).rejects.toThrow(/^allReduceTensors: tensors\['ints'\] has been disposed/);
    await expect(allReduceTensors(t, { x: new Float32Array(1) as unknown as tf.Tensor })).rejects.toThrow(
      /^allReduceTensors: tensors\['x'\] must be a tf.Tensor/,
    );
    expect(tf.memory().numTensors).toBe(before);
  });
});
