import { countReadBacks } from '@mkor/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { skipCounts, skipCountsAsync, skipNonFinite } from './guard';
import { applyTransform } from './memory';
import type { Transform } from './transform';

/** Counts steps and accumulates the updates' sum in a tensor: state that a bad step must not touch. */
const accumulate: Transform<{ total: tf.Tensor; steps: number }> = {
  init: () => ({ total: tf.scalar(0), steps: 0 }),
  update: (updates, state) => ({
    updates,
    state: { total: tf.add(state.total, tf.addN(Object.values(updates).map((u) => tf.sum(u)))), steps: state.steps + 1 },
  }),
};

describe('skipNonFinite', () => {
  it('skips NaN/Inf steps without touching the inner state, and counts them', () => {
    const guarded = skipNonFinite(accumulate);
    let state = guarded.init({});
    const good = { w: tf.tensor1d([1, 2]) };
    const bad = { w: tf.tensor1d([1, Number.NaN]) };
    const inf = { w: tf.tensor1d([Number.POSITIVE_INFINITY, 0]) };
    const before = tf.memory().numTensors;
    for (const updates of [good, bad, good, inf]) {
      const result = applyTransform(guarded, updates, state);
      state = result.state;
      const out = result.updates.w!;
      if (updates === good) expect(out).toBe(good.w);
      else {
        expect(Array.from(out.dataSync())).toEqual([0, 0]);
        out.dispose();
      }
    }
    expect(state.skippedSteps).toBe(2);
    expect(state.refusedResults).toBe(0);
    expect(state.lastSkipped).toBe(true);
    expect(state.inner.steps).toBe(2);
    expect(state.inner.total.dataSync()[0]).toBe(6);
    // The initial total was replaced once per good step; only the current one is alive.
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([good.w, bad.w, inf.w, state.inner.total]);
  });

  it('refuses a step with finite gradients whose new state would overflow, freeing what it created', () => {
    // The sum of squares overflows float32 for entries above ≈ 1.8e19, as Adam's second moment does.
    const squares: Transform<{ total: tf.Tensor }> = {
      init: () => ({ total: tf.scalar(0) }),
      update: (updates, state) => ({
        updates: Object.fromEntries(Object.entries(updates).map(([k, u]) => [k, tf.mul(u, 2)])),
        state: { total: tf.add(state.total, tf.addN(Object.values(updates).map((u) => tf.sum(tf.square(u))))) },
      }),
    };
    const guarded = skipNonFinite(squares);
    let state = guarded.init({});
    const huge = { w: tf.tensor1d([1e20, 1]) };
    const small = { w: tf.tensor1d([3, 4]) };
    const before = tf.memory().numTensors;
    for (const updates of [small, huge, small]) {
      const result = applyTransform(guarded, updates, state);
      state = result.state;
      const out = Array.from(result.updates.w!.dataSync());
      expect(out).toEqual(updates === huge ? [0, 0] : [6, 8]);
      result.updates.w!.dispose();
    }
    expect(state.skippedSteps).toBe(1);
    expect(state.refusedResults).toBe(1);
    expect(state.lastSkipped).toBe(false);
    expect(state.inner.total.dataSync()[0]).toBe(50);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([huge.w, small.w, state.inner.total]);
  });

  it('refuses a step whose update would push a parameter past float32 (w + u = Inf)', () => {
    const identity: Transform<{ steps: number }> = { init: () => ({ steps: 0 }), update: (updates, state) => ({ updates, state: { steps: state.steps + 1 } }) };
    const guarded = skipNonFinite(identity);
    const w = tf.variable(tf.tensor1d([3e38, 0]));
    const updates = { w: tf.tensor1d([3e38, 1]) };
    const before = tf.memory().numTensors;
    const withParams = applyTransform(guarded, updates, guarded.init({}), { params: { w } });
    expect(withParams.state).toMatchObject({ skippedSteps: 1, refusedResults: 1, inner: { steps: 0 } });
    expect(Array.from(withParams.updates.w!.dataSync())).toEqual([0, 0]);
    withParams.updates.w!.dispose();
    // Without the parameters in the context the update itself is finite and goes through.
    const without = applyTransform(guarded, updates, guarded.init({}));
    expect(without.state).toMatchObject({ skippedSteps: 0, refusedResults: 0, inner: { steps: 1 } });
    expect(without.updates.w).toBe(updates.w);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([w, updates.w]);
  });
});


describe("skipNonFinite with decisions: 'device'", () => {
  it('refuses the same steps as with read-backs, keeps the same tensors, and reads nothing back', () => {
    const good = { w: tf.tensor1d([1, 2]) };
    const bad = { w: tf.tensor1d([1, Number.NaN]) };
    const inf = { w: tf.tensor1d([Number.POSITIVE_INFINITY, 0]) };
    const run = (decisions: 'read-back' | 'device') => {
      const guarded = skipNonFinite(accumulate, { decisions });
      let state = guarded.init({});
      const before = tf.memory().numTensors;
      const outputs: number[][] = [];
      let readBacks = 0;
      for (const updates of [good, bad, good, inf]) {
        readBacks += countReadBacks(() => {
          const result = applyTransform(guarded, updates, state);
          state = result.state;
          outputs.push(Array.from(result.updates.w!.dataSync()));
          if (result.updates.w !== updates.w) result.updates.w!.dispose();
        });
      }
      expect(tf.memory().numTensors).toBe(before);
      const total = state.inner.total.dataSync()[0];
      const counts = skipCounts(state);
      tf.dispose([state.inner.total, ...(state.deviceCounts === undefined ? [] : [state.deviceCounts])]);
      // Each step reads its update back above (one read); the guard's own read-backs come on top.
      return { outputs, total, counts, steps: state.inner.steps, guardReadBacks: readBacks - 4 };
    };
    const hosted = run('read-back');
    const device = run('device');
    expect(device.outputs).toEqual(hosted.outputs);
    expect(device.total).toBe(6);
    expect(hosted.total).toBe(6);
    expect(device.counts).toEqual({ skippedSteps: 2, refusedResults: 0, lastSkipped: true });
    expect(hosted.counts).toEqual(device.counts);
    expect(hosted.guardReadBacks).toBe(6);
    expect(device.guardReadBacks).toBe(0);
    // The documented difference: plain numbers of the inner state advance on refused device steps.
    expect(hosted.steps).toBe(2);
    expect(device.steps).toBe(4);
    tf.dispose([good.w, bad.w, inf.w]);
  });

  it('counts a step whose result would overflow as refused, and keeps the state; reads the counts synchronously or not', async () => {
    const squares: Transform<{ total: tf.Tensor }> = {
      init: () => ({ total: tf.scalar(0) }),
      update: (updates, state) => ({
        updates,
        state: { total: tf.add(state.total, tf.addN(Object.values(updates).map((u) => tf.sum(tf.square(u))))) },
      }),
    };
    const guarded = skipNonFinite(squares, { decisions: 'device' });
    let state = guarded.init({});
    const before = tf.memory().numTensors;
    for (const w of [[3, 4], [1e20, 1], [3, 4]]) {
      const updates = { w: tf.tensor1d(w) };
      const result = applyTransform(guarded, updates, state);
      state = result.state;
      tf.dispose([updates.w, result.updates.w!]);
    }
    expect(state.inner.total.dataSync()[0]).toBe(50);
    expect(skipCounts(state)).toEqual({ skippedSteps: 1, refusedResults: 1, lastSkipped: false });
    // The same counts read asynchronously, with no synchronous read-back (what webgpu needs).
    let asynchronous: Promise<unknown> | undefined;
    expect(countReadBacks(() => (asynchronous = skipCountsAsync(state)))).toBe(0);
    await expect(asynchronous).resolves.toEqual({ skippedSteps: 1, refusedResults: 1, lastSkipped: false });
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([state.inner.total, state.deviceCounts!]);
  });

  it('refuses a state holding tensors in something other than plain objects and arrays, and a bad option', () => {
    class Holder {
      constructor(readonly tensor: tf.Tensor | null) {}
    }
    const mapped: Transform<{ table: Holder }> = {
      init: () => ({ table: new Holder(null) }),
      update: (updates) => ({ updates, state: { table: new Holder(tf.clone(updates.w!)) } }),
    };
    const guarded = skipNonFinite(mapped, { decisions: 'device' });
    const state = guarded.init({});
    const updates = { w: tf.tensor1d([1]) };
    const before = tf.memory().numTensors;
    expect(() => applyTransform(guarded, updates, state)).toThrow(
      "skipNonFinite (decisions 'device'): the state holds tensors inside a Holder; only plain objects and arrays can be chosen on the device",
    );
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([updates.w, state.deviceCounts!]);
    expect(() => skipNonFinite(accumulate, { decisions: 'gpu' as never })).toThrow("skipNonFinite: decisions must be one of 'read-back', 'device'");
  });
});
