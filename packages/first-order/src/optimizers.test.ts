import { type Transform, applyTransform, cosineDecay, exponentialDecay, linearSchedule, tensorsIn } from '@mkor/core';
import {
  type Reference64,
  type Values64,
  adamReference64,
  adamwReference64,
  lambReference64,
  sgdReference64,
} from '@mkor/testing';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { applyUpdates } from './apply-updates';
import { adam, adamw, lamb, sgd } from './optimizers';

/**
 * Tolerance of a float32 update against its float64 reference, relative to the update's
 * magnitude scale. Each entry is a few dozen float32 operations (moment recurrences over the
 * steps, a square root, divisions, LAMB's norms), each off by at most u = 2⁻²⁴ ≈ 6e-8 of the size
 * of its operands. Mixed-sign sums (momentum buffers, first moments, g + λw) can cancel, so the
 * error is relative to the operands, not to the result: the scale is the largest entry of the
 * same reference run on |w| and |g| (the running magnitude of every sum), or of the update itself
 * if larger, per tensor. 100·u ≈ 6e-6 covers that with room: 2e-5 (measured errors stay < 5e-6).
 */
const RELATIVE_TOLERANCE = 2e-5;
const STEPS = 6;

/** A small deterministic generator (mulberry32), so a fast-check seed fixes a whole problem. */
function generator(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Problem {
  readonly shapes: Record<string, number[]>;
  readonly initial: Values64;
  /** One gradient map per step, float32-representable. */
  readonly gradients: Values64[];
}

/** Random parameter names and shapes (rank 0–2, a bias among them), values and gradients. */
function makeProblem(seed: number, steps = STEPS): Problem {
  const random = generator(seed);
  const count = 1 + Math.floor(random() * 3);
  const shapes: Record<string, number[]> = {};
  for (let i = 0; i < count; i++) {
    const rank = Math.floor(random() * 3);
    const shape = Array.from({ length: rank }, () => 1 + Math.floor(random() * 4));
    shapes[i === 0 ? 'dense/bias' : `dense${i}/kernel`] = shape;
  }
  const values = (shape: number[], scale: number) =>
    Float64Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => Math.fround((2 * random() - 1) * scale));
  const gradientScale = 10 ** (2 * random() - 1);
  const initial: Values64 = {};
  for (const [name, shape] of Object.entries(shapes)) initial[name] = values(shape, 1);
  const gradients = Array.from({ length: steps }, () => {
    const g: Values64 = {};
    for (const [name, shape] of Object.entries(shapes)) g[name] = values(shape, gradientScale);
    return g;
  });
  return { shapes, initial, gradients };
}

function toTensors(values: Values64, shapes: Record<string, number[]>): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  for (const [name, v] of Object.entries(values)) out[name] = tf.tensor(Float32Array.from(v), shapes[name]);
  return out;
}

/**
 * Runs `optimizer` and `reference` on the same problem for its steps: both see the same float32
 * parameters and gradients at every step (the parameters advance by the float32 updates), and
 * every update is compared entry by entry. Also checks that nothing leaks.
 */
function expectMatchesReference(optimizer: Transform<unknown>, makeReference: () => Reference64, problem: Problem): void {
  const reference = makeReference();
  const magnitudeReference = makeReference();
  const absolute = (values: Values64): Values64 =>
    Object.fromEntries(Object.entries(values).map(([name, v]) => [name, v.map(Math.abs)]));
  const before = tf.memory().numTensors;
  let params = problem.initial;
  const initialTensors = toTensors(params, problem.shapes);
  let state = optimizer.init(initialTensors);
  tf.dispose(Object.values(initialTensors));
  for (const gradients of problem.gradients) {
    const paramTensors = toTensors(params, problem.shapes);
    const gradTensors = toTensors(gradients, problem.shapes);
    const result = applyTransform(optimizer, gradTensors, state, { params: paramTensors });
    state = result.state;
    const expected = reference(params, gradients);
    const magnitudes = magnitudeReference(absolute(params), absolute(gradients));
    const next: Values64 = {};
    for (const [name, want] of Object.entries(expected)) {
      const got = (result.updates[name] as tf.Tensor).dataSync();
      const scale = Math.max(...Array.from(want, Math.abs), ...Array.from(magnitudes[name] as Float64Array, Math.abs));
      want.forEach((w, i) => expect(Math.abs((got[i] as number) - w)).toBeLessThanOrEqual(RELATIVE_TOLERANCE * scale));
      next[name] = Float64Array.from(params[name] as Float64Array, (p, i) => Math.fround(p + (got[i] as number)));
    }
    params = next;
    tf.dispose([...Object.values(paramTensors), ...Object.values(gradTensors), ...Object.values(result.updates)]);
  }
  tf.dispose(tensorsIn(state));
  expect(tf.memory().numTensors).toBe(before);
}

const isKernel = (name: string) => !name.endsWith('/bias');
const seed = fc.integer({ min: 0, max: 2 ** 31 - 1 });
const rate = fc.double({ min: 1e-4, max: 0.5, noNaN: true });
const decayRate = fc.double({ min: 0, max: 0.99, noNaN: true });

/** Runs a test body and checks that it leaves no tensor behind. */
function expectNoLeaks(body: () => void): void {
  const before = tf.memory().numTensors;
  body();
  expect(tf.memory().numTensors).toBe(before);
}

describe('named optimizers against float64 references of their update rules', () => {
  it('sgd: plain, momentum and Nesterov, with L2 decay on kernels and a scheduled learning rate', () => {
    fc.assert(
      fc.property(seed, rate, decayRate, fc.boolean(), fc.double({ min: 0, max: 0.1, noNaN: true }), (s, lr, mu, nesterov, wd) => {
        const schedule = cosineDecay(lr, STEPS);
        expectMatchesReference(
          sgd({ learningRate: schedule, momentum: mu, nesterov, weightDecay: wd, weightDecayMask: isKernel }),
          () => sgdReference64({ learningRate: schedule, momentum: () => mu, nesterov, weightDecay: () => wd, decays: isKernel }),
          makeProblem(s),
        );
        expectMatchesReference(sgd({ learningRate: lr }), () => sgdReference64({ learningRate: () => lr }), makeProblem(s + 1));
      }),
      { numRuns: 12 },
    );
  });

  it('adam, with L2 decay added to the gradient', () => {
    fc.assert(
      fc.property(seed, rate, decayRate, fc.double({ min: 0.9, max: 0.9999, noNaN: true }), (s, lr, beta1, beta2) => {
        const weightDecay = linearSchedule(0.1, 0, STEPS);
        expectMatchesReference(
          adam({ learningRate: lr, beta1, beta2, epsilon: 1e-8, weightDecay, weightDecayMask: isKernel }),
          () => adamReference64({ learningRate: () => lr, beta1, beta2, epsilon: 1e-8, weightDecay, decays: isKernel }),
          makeProblem(s),
        );
      }),
      { numRuns: 12 },
    );
  });

  it('adamw, with decoupled scheduled decay and a decaying learning rate', () => {
    fc.assert(
      fc.property(seed, rate, fc.double({ min: 0, max: 0.2, noNaN: true }), (s, lr, wd) => {
        const learningRate = exponentialDecay(lr, 0.5, STEPS);
        expectMatchesReference(
          adamw({ learningRate, weightDecay: wd, weightDecayMask: isKernel, epsilon: 1e-6 }),
          () => adamwReference64({ learningRate, beta1: 0.9, beta2: 0.999, epsilon: 1e-6, weightDecay: () => wd, decays: isKernel }),
          makeProblem(s),
        );
      }),
      { numRuns: 12 },
    );
  });

  it('lamb, with decay, masks and clipped φ(‖w‖)', () => {
    fc.assert(
      fc.property(seed, rate, fc.double({ min: 0, max: 0.1, noNaN: true }), fc.boolean(), (s, lr, wd, clip) => {
        const clipping = clip ? { minWeightNorm: 0.5, maxWeightNorm: 1.5 } : {};
        expectMatchesReference(
          lamb({ learningRate: lr, weightDecay: wd, weightDecayMask: isKernel, trustRatioMask: isKernel, ...clipping }),
          () => lambReference64({
            learningRate: () => lr,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-6,
            weightDecay: () => wd,
            decays: isKernel,
            trusts: isKernel,
            ...clipping,
          }),
          makeProblem(s),
        );
      }),
      { numRuns: 12 },
    );
  });
});

/**
 * The same least-squares problem, `½‖Xw − y‖²`, trained by a tfjs optimizer and by ours through
 * `applyUpdates`: two independent float32 implementations of the same rule.
 */
function trainLeastSquares(
  step: (variables: Record<string, tf.Variable>, grads: tf.NamedTensorMap) => void,
  steps: number,
): Float32Array {
  const random = generator(7);
  const x = tf.tensor2d(Float32Array.from({ length: 32 * 5 }, () => 2 * random() - 1), [32, 5]);
  const y = tf.tensor2d(Float32Array.from({ length: 32 }, () => 2 * random() - 1), [32, 1]);
  const w = tf.tidy(() => tf.variable(tf.tensor2d(Float32Array.from({ length: 5 }, () => random()), [5, 1]), true, `w${random()}`));
  const variables = { [w.name]: w };
  for (let i = 0; i < steps; i++) {
    const { value, grads } = tf.variableGrads(() => tf.mul(tf.sum(tf.square(tf.sub(tf.matMul(x, w), y))), 0.5) as tf.Scalar, [w]);
    step(variables, grads);
    tf.dispose([value, ...Object.values(grads)]);
  }
  const result = w.dataSync() as Float32Array;
  tf.dispose([x, y, w]);
  return Float32Array.from(result);
}

function expectSameTraining(ours: Transform<unknown>, theirs: () => tf.Optimizer): void {
  const steps = 25;
  const optimizer = theirs();
  const expected = trainLeastSquares((_variables, grads) => optimizer.applyGradients(grads), steps);
  optimizer.dispose();
  // Counted from here: tfjs's MomentumOptimizer.dispose leaves its learning-rate scalar behind.
  const before = tf.memory().numTensors;
  let state: unknown;
  const got = trainLeastSquares((variables, grads) => {
    state ??= ours.init(variables);
    const result = applyTransform(ours, grads, state, { params: variables });
    state = result.state;
    applyUpdates(variables, result.updates);
    tf.dispose(Object.values(result.updates));
  }, steps);
  tf.dispose(tensorsIn(state));
  expect(tf.memory().numTensors).toBe(before);
  // Two float32 implementations with different operation orders: each step differs by a few
  // roundings (u ≈ 6e-8) of the weights' size, compounded over 25 steps of a contraction: 1e-5.
  const scale = Math.max(...Array.from(expected, Math.abs));
  expected.forEach((e, i) => expect(Math.abs((got[i] as number) - e)).toBeLessThanOrEqual(1e-5 * scale));
}

describe('against the optimizers of tfjs', () => {
  it('sgd equals tf.train.sgd', () => {
    expectSameTraining(sgd({ learningRate: 0.01 }), () => tf.train.sgd(0.01));
  });
  it('sgd with momentum equals tf.train.momentum', () => {
    expectSameTraining(sgd({ learningRate: 0.01, momentum: 0.9 }), () => tf.train.momentum(0.01, 0.9));
  });
  it('sgd with Nesterov momentum equals tf.train.momentum(…, useNesterov)', () => {
    expectSameTraining(sgd({ learningRate: 0.01, momentum: 0.9, nesterov: true }), () => tf.train.momentum(0.01, 0.9, true));
  });
  it('adam equals tf.train.adam', () => {
    expectSameTraining(adam({ learningRate: 0.05, beta1: 0.9, beta2: 0.99, epsilon: 1e-7 }), () => tf.train.adam(0.05, 0.9, 0.99, 1e-7));
  });
});

describe('validation', () => {
  it('rejects bad hyperparameters with the optimizer name', () => expectNoLeaks(() => {
    expect(() => sgd({ learningRate: Number.NaN })).toThrow(/^sgd: learningRate must be \[0, ∞\), got NaN/);
    expect(() => sgd({ learningRate: -1 })).toThrow(/^sgd: learningRate/);
    expect(() => sgd({ learningRate: 0.1, momentum: 1 })).toThrow(/^sgd: momentum must be \[0, 1\), got 1/);
    expect(() => sgd({ learningRate: 0.1, nesterov: true })).toThrow(/^sgd: nesterov needs a momentum/);
    expect(() => sgd({ learningRate: 0.1, weightDecay: -0.1 })).toThrow(/^sgd: weightDecay/);
    expect(() => adam({ learningRate: 0.1, beta1: 1 })).toThrow(/^adam: beta1 must be \[0, 1\), got 1/);
    expect(() => adam({ learningRate: 0.1, beta2: -0.5 })).toThrow(/^adam: beta2/);
    expect(() => adam({ learningRate: 0.1, epsilon: 0 })).toThrow(/^adam: epsilon must be \(0, ∞\), got 0/);
    expect(() => adamw({ learningRate: Infinity })).toThrow(/^adamw: learningRate/);
    expect(() => adamw({ learningRate: 0.1, weightDecay: Number.NaN })).toThrow(/^adamw: weightDecay/);
    expect(() => lamb({ learningRate: 0.1, maxWeightNorm: 0 })).toThrow(/^scaleByTrustRatio: maxWeightNorm/);
    expect(() => lamb({ learningRate: 0.1, minWeightNorm: 2, maxWeightNorm: 1 })).toThrow(/≥ minWeightNorm/);
  }));

  it('checks a scheduled learning rate at every step', () => expectNoLeaks(() => {
    const optimizer = sgd({ learningRate: (step) => 0.1 - 0.1 * step });
    const w = tf.tensor1d([1, 2]);
    let state = optimizer.init({ w });
    const first = applyTransform(optimizer, { w }, state, { params: { w } });
    state = first.state;
    const second = applyTransform(optimizer, { w }, state, { params: { w } });
    state = second.state;
    expect(() => optimizer.update({ w }, state, { params: { w } })).toThrow(
      /^scaleByLearningRate: learningRate at step 2 must be \[0, ∞\), got -0\.1/,
    );
    tf.dispose([w, ...Object.values(first.updates), ...Object.values(second.updates), ...tensorsIn(state)]);
  }));
});

describe('memory', () => {
  it('leaks nothing over many steps and never disposes its inputs', () => {
    const params = { a: tf.randomNormal([4, 3]), b: tf.randomNormal([3]) };
    const grads = { a: tf.randomNormal([4, 3]), b: tf.randomNormal([3]) };
    for (const optimizer of [
      sgd({ learningRate: 0.1, momentum: 0.9, weightDecay: 1e-3 }),
      adam({ learningRate: 0.1, weightDecay: 1e-3 }),
      adamw({ learningRate: 0.1 }),
      lamb({ learningRate: 0.1, weightDecay: 0.01 }),
    ]) {
      const before = tf.memory().numTensors;
      let state = optimizer.init(params);
      const stateSize = tf.memory().numTensors - before;
      for (let i = 0; i < 100; i++) {
        const result = applyTransform(optimizer, grads, state, { params });
        state = result.state;
        tf.dispose(Object.values(result.updates));
        expect(tf.memory().numTensors).toBe(before + stateSize);
      }
      tf.dispose(tensorsIn(state));
      expect(tf.memory().numTensors).toBe(before);
    }
    for (const t of [...Object.values(params), ...Object.values(grads)]) expect(t.isDisposed).toBe(false);
    tf.dispose([...Object.values(params), ...Object.values(grads)]);
  });
});
