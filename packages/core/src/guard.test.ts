import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { skipNonFinite } from './guard';
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
