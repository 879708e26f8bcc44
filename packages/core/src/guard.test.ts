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
    expect(state.lastSkipped).toBe(true);
    expect(state.inner.steps).toBe(2);
    expect(state.inner.total.dataSync()[0]).toBe(6);
    // The initial total was replaced once per good step; only the current one is alive.
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([good.w, bad.w, inf.w, state.inner.total]);
  });
});
