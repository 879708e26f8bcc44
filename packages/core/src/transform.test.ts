import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { applyTransform } from './memory';
import { type Transform, chain, scaleBy } from './transform';

/** A transform with tensor state: adds a running sum of the updates to them (u ← u + Σu). */
function addRunningSum(): Transform<{ sum: Record<string, tf.Tensor> }> {
  return {
    init: (params) => ({ sum: Object.fromEntries(Object.entries(params).map(([k, p]) => [k, tf.zerosLike(p)])) }),
    update: (updates, state) => {
      const sum: Record<string, tf.Tensor> = {};
      const out: Record<string, tf.Tensor> = {};
      for (const [k, u] of Object.entries(updates)) {
        sum[k] = tf.add(state.sum[k]!, u);
        out[k] = tf.add(u, sum[k]!);
      }
      return { updates: out, state: { sum } };
    },
  };
}

describe('chain', () => {
  it('equals applying the parts by hand, and leaks nothing', () => {
    const params = { w: tf.tensor1d([1, 2, 3]) };
    const grad = { w: tf.tensor1d([0.5, -1, 2]) };
    const a = addRunningSum();
    const b = scaleBy((step) => 0.1 * (step + 1));
    const chained = chain(a, b);

    let chainedState = chained.init(params);
    let aState = a.init(params);
    let bState = b.init(params);
    const before = tf.memory().numTensors;
    for (let step = 0; step < 3; step++) {
      const byChain = applyTransform(chained, grad, chainedState, { params });
      chainedState = byChain.state;
      const byA = applyTransform(a, grad, aState);
      aState = byA.state;
      const byB = applyTransform(b, byA.updates, bState);
      bState = byB.state;
      // Float64 expectation: u + (step+1)·u, scaled by 0.1·(step+1).
      const expected = [0.5, -1, 2].map((g) => g * (step + 2) * 0.1 * (step + 1));
      const got = byChain.updates.w!.dataSync();
      expected.forEach((e, i) => expect(got[i]).toBeCloseTo(e, 5));
      expect(Array.from(byB.updates.w!.dataSync())).toEqual(Array.from(got));
      tf.dispose([byChain.updates.w!, byA.updates.w!, byB.updates.w!]);
    }
    // Only the two running sums (one per copy of the state) are alive beyond the start.
    expect(tf.memory().numTensors).toBe(before);
    expect(chainedState[1].step).toBe(3);
    tf.dispose([params.w, grad.w, chainedState[0].sum.w!, aState.sum.w!]);
  });

  it('refuses a state that does not match its parts', () => {
    const chained = chain(scaleBy(1), scaleBy(2));
    expect(() => chained.update({}, [{ step: 0 }] as never)).toThrow(/2 transforms/);
  });
});

describe('scaleBy', () => {
  it('rejects a schedule that returns NaN', () => {
    const t = scaleBy(() => Number.NaN);
    expect(() => t.update({ w: tf.scalar(1) }, { step: 4 })).toThrow(/schedule at step 4/);
  });
});
