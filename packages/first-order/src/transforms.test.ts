import { applyTransform, chain, tensorsIn } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { adamw, lamb } from './optimizers';
import {
  addDecayedWeights,
  scaleByAdam,
  scaleByLearningRate,
  scaleByTrustRatio,
  traceMomentum,
} from './transforms';

const values = (t: tf.Tensor | undefined) => Array.from((t as tf.Tensor).dataSync());

/** Runs a test body and checks that it leaves no tensor behind. */
function expectNoLeaks(body: () => void): void {
  const before = tf.memory().numTensors;
  body();
  expect(tf.memory().numTensors).toBe(before);
}

describe('scaleByTrustRatio edge cases', () => {
  it('uses a ratio of 1 when the weights or the update are zero, and φ(‖w‖)/‖u‖ otherwise', () => expectNoLeaks(() => {
    const params = { zero: tf.zeros([2]), live: tf.tensor1d([3, 4]), still: tf.tensor1d([1, 0]) };
    const updates = { zero: tf.tensor1d([0.5, -0.25]), live: tf.tensor1d([0, 2]), still: tf.zeros([2]) };
    const before = tf.memory().numTensors;
    const result = applyTransform(scaleByTrustRatio(), updates, {}, { params });
    expect(tf.memory().numTensors).toBe(before + 3);
    // Zero weights: ratio 1, the update passes unchanged (exactly: a multiplication by 1).
    expect(values(result.updates.zero)).toEqual([0.5, -0.25]);
    // ‖w‖ = 5, ‖u‖ = 2: ratio 2.5, exact in float32.
    expect(values(result.updates.live)).toEqual([0, 5]);
    // A zero update stays zero, with no NaN from 0/0.
    expect(values(result.updates.still)).toEqual([0, 0]);
    tf.dispose([...Object.values(params), ...Object.values(updates), ...Object.values(result.updates)]);
    expect(tf.memory().numTensors).toBe(before - 6);
  }));

  it('clips φ(‖w‖) to [minWeightNorm, maxWeightNorm] and skips masked-out parameters', () => expectNoLeaks(() => {
    const params = { small: tf.tensor1d([0.3, 0.4]), large: tf.tensor1d([30, 40]), bias: tf.tensor1d([30, 40]) };
    const updates = { small: tf.tensor1d([0, 1]), large: tf.tensor1d([0, 1]), bias: tf.tensor1d([0, 1]) };
    const transform = scaleByTrustRatio({ minWeightNorm: 1, maxWeightNorm: 10, mask: (name) => name !== 'bias' });
    const result = applyTransform(transform, updates, {}, { params });
    expect(values(result.updates.small)).toEqual([0, 1]); // ‖w‖ = 0.5 clipped up to 1
    expect(values(result.updates.large)).toEqual([0, 10]); // ‖w‖ = 50 clipped down to 10
    expect(values(result.updates.bias)).toEqual([0, 1]); // masked out: unchanged
    tf.dispose([...Object.values(params), ...Object.values(updates), ...Object.values(result.updates)]);
  }));

  it('gives LAMB a step of exactly η·‖w‖ per layer, in the direction of −u', () => expectNoLeaks(() => {
    const params = { w: tf.tensor2d([[1, -2], [2, 0]]) };
    const grads = { w: tf.tensor2d([[0.1, 5], [-3, 0.01]]) };
    const optimizer = lamb({ learningRate: 0.01 });
    const state = optimizer.init(params);
    const result = applyTransform(optimizer, grads, state, { params });
    const step = values(result.updates.w);
    // Float64 reference: ‖Δw‖ = η·‖w‖ = 0.03; float32 norms and products: 1e-6 relative.
    expect(Math.hypot(...step)).toBeCloseTo(0.03, 7);
    // At step 1, m̂/(√v̂+ε) ≈ sign(g): the step opposes the gradient entry by entry.
    step.forEach((s, i) => expect(Math.sign(s)).toBe(-Math.sign(values(grads.w)[i] as number)));
    tf.dispose([params.w, grads.w, result.updates.w!, ...tensorsIn(state), ...tensorsIn(result.state)]);
  }));

  it('needs context.params', () => expectNoLeaks(() => {
    const u = { w: tf.scalar(1) };
    expect(() => scaleByTrustRatio().update(u, {})).toThrow(/^scaleByTrustRatio: context.params is required/);
    expect(() => addDecayedWeights({ weightDecay: 0.1 }).update(u, { step: 0 })).toThrow(
      /^addDecayedWeights: context.params is required/,
    );
    expect(() => scaleByTrustRatio().update(u, {}, { params: {} })).toThrow(/context.params has no entry 'w'/);
    tf.dispose(u.w);
  }));
});

describe('addDecayedWeights', () => {
  it('adds λ·w to the selected parameters only', () => expectNoLeaks(() => {
    const params = { kernel: tf.tensor1d([1, -2]), bias: tf.tensor1d([4, 8]) };
    const updates = { kernel: tf.tensor1d([0.5, 0.5]), bias: tf.tensor1d([0.5, 0.5]) };
    const transform = addDecayedWeights({ weightDecay: (step) => 0.25 * (step + 1), mask: (name) => name === 'kernel' });
    const first = applyTransform(transform, updates, transform.init(params), { params });
    expect(values(first.updates.kernel)).toEqual([0.75, 0]);
    expect(first.updates.bias).toBe(updates.bias);
    const second = applyTransform(transform, updates, first.state, { params });
    expect(values(second.updates.kernel)).toEqual([1, -0.5]);
    tf.dispose([...Object.values(params), ...Object.values(updates), first.updates.kernel!, second.updates.kernel!]);
  }));
});

describe('state handling', () => {
  it('keeps the state of parameters that got no update this step', () => {
    const params = { a: tf.tensor1d([1]), b: tf.tensor1d([2]) };
    const transform = traceMomentum({ decay: 0.5 });
    const state = transform.init(params);
    const update = { a: tf.tensor1d([1]) };
    const before = tf.memory().numTensors;
    const result = applyTransform(transform, update, state);
    expect(result.state.trace.b).toBe(state.trace.b);
    expect(state.trace.a!.isDisposed).toBe(true); // replaced, so applyTransform freed it
    expect(values(result.state.trace.a)).toEqual([1]);
    // The new trace of a replaced the old one; the update is a handle of its own on the same data.
    expect(tf.memory().numTensors).toBe(before + 1);
    result.updates.a!.dispose();
    expect(values(result.state.trace.a)).toEqual([1]);
    tf.dispose([...Object.values(params), update.a, ...tensorsIn(result)]);
  });

  it('names the variable an update has no state for, or whose shape differs', () => expectNoLeaks(() => {
    const params = { a: tf.zeros([2]) };
    const adamState = scaleByAdam().init(params);
    const stray = { b: tf.zeros([2]) };
    expect(() => scaleByAdam().update(stray, adamState)).toThrow(/^scaleByAdam: the first-moment state has no entry 'b'/);
    const wrong = { a: tf.zeros([3]) };
    const momentum = traceMomentum({ decay: 0.9 });
    const momentumState = momentum.init(params);
    expect(() => momentum.update(wrong, momentumState)).toThrow(
      /^traceMomentum: the update of 'a' has shape \[3\], expected \[2\]/,
    );
    tf.dispose([params.a, stray.b, wrong.a, ...tensorsIn(adamState), ...tensorsIn(momentumState)]);
  }));

  it('rejects bad hyperparameters of the building blocks', () => expectNoLeaks(() => {
    expect(() => traceMomentum({ decay: -0.1 })).toThrow(/^traceMomentum: decay must be \[0, 1\)/);
    expect(() => traceMomentum({ decay: 0.9, nesterov: 'yes' as never })).toThrow(/^traceMomentum: nesterov/);
    expect(() => scaleByAdam({ epsilon: -1 })).toThrow(/^scaleByAdam: epsilon/);
    expect(() => addDecayedWeights({ weightDecay: -1 })).toThrow(/^addDecayedWeights: weightDecay/);
    expect(() => addDecayedWeights({ weightDecay: 1, mask: 'bias' as never })).toThrow(/^addDecayedWeights: mask/);
    expect(() => scaleByLearningRate(Number.NaN)).toThrow(/^scaleByLearningRate: learningRate/);
    const t = scaleByLearningRate(() => Number.POSITIVE_INFINITY);
    const u = { w: tf.scalar(1) };
    expect(() => t.update(u, { step: 3 })).toThrow(/^scaleByLearningRate: learningRate must be a finite number.*step 3/);
    tf.dispose(u.w);
  }));
});

describe('named optimizers are chains of the building blocks', () => {
  it('adamw equals chain(scaleByAdam, addDecayedWeights, scaleByLearningRate), bit for bit', () => {
    const params = { w: tf.tensor2d([[0.5, -1], [2, 0.25]]) };
    const grads = [tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[-1, 0.5], [0, 2]])];
    const named = adamw({ learningRate: 0.1, weightDecay: 0.05 });
    const byHand = chain(scaleByAdam(), addDecayedWeights({ weightDecay: 0.05 }), scaleByLearningRate(0.1));
    let namedState = named.init(params);
    let handState = byHand.init(params);
    const before = tf.memory().numTensors;
    for (const g of grads) {
      const a = applyTransform(named, { w: g }, namedState, { params });
      const b = applyTransform(byHand, { w: g }, handState, { params });
      namedState = a.state;
      handState = b.state;
      expect(values(a.updates.w)).toEqual(values(b.updates.w));
      tf.dispose([a.updates.w!, b.updates.w!]);
    }
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([params.w, ...grads, ...tensorsIn(namedState), ...tensorsIn(handState)]);
  });
});
