import { type Transform, applyTransform, chain, flattenState, restoreState, scaleBy, tensorsIn } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { type HybridSwitchState, hasSwitched, hybridSwitch } from './hybrid-switch';
import { type SwitchRule, lossRateRule, switchAtStep } from './rules';

/** Runs a test body and checks that it leaves no tensor behind. */
function expectNoLeaks(body: () => void): void {
  const before = tf.memory().numTensors;
  body();
  expect(tf.memory().numTensors).toBe(before);
}

/**
 * A stand-in for a second-order preconditioner with tensor state: multiplies every update by 2
 * and keeps a per-parameter running sum of what it saw (so its state changes every step).
 */
function doubler(): Transform<{ seen: Record<string, tf.Tensor> }> {
  return {
    init: (params) => ({ seen: Object.fromEntries(Object.entries(params).map(([k, p]) => [k, tf.zerosLike(p)])) }),
    update: (updates, state) => {
      const seen: Record<string, tf.Tensor> = {};
      const out: Record<string, tf.Tensor> = {};
      for (const [k, u] of Object.entries(updates)) {
        seen[k] = tf.add(state.seen[k]!, u);
        out[k] = tf.mul(u, 2);
      }
      return { updates: out, state: { seen } };
    },
  };
}

/** A rule that counts how often it is asked (outside its state) and switches at `at`. */
function countingRule(at: number): { rule: SwitchRule<Record<string, never>>; calls: () => number } {
  let calls = 0;
  return {
    rule: {
      init: () => ({}),
      observe: (state, { step }) => {
        calls += 1;
        return { state, switchNow: step >= at };
      },
    },
    calls: () => calls,
  };
}

const KNEE = 100;
const fastThenPlateau = (step: number) => (step < KNEE ? 3 - (2 * step) / KNEE : 1 - 1e-5 * (step - KNEE));

describe('hybridSwitch', () => {
  it('runs the second-order transform before step k and passes updates through from step k on', () => expectNoLeaks(() => {
    const params = { w: tf.tensor1d([1, 2]) };
    const grad = { w: tf.tensor1d([0.5, -1]) };
    const { rule, calls } = countingRule(7);
    const transform = hybridSwitch(doubler(), rule);
    let state = transform.init(params);
    const before = tf.memory().numTensors;
    for (let step = 0; step < 20; step++) {
      const result = applyTransform(transform, grad, state, { params, loss: 1 });
      state = result.state;
      if (step < 7) {
        expect(Array.from(result.updates.w!.dataSync())).toEqual([1, -2]);
        tf.dispose(result.updates.w!);
      } else {
        expect(result.updates.w).toBe(grad.w); // untouched: the very same tensor
      }
      expect(state.switchedAtStep).toBe(step < 7 ? -1 : 7);
      expect(hasSwitched(state)).toBe(step >= 7);
      expect(tf.memory().numTensors).toBe(before);
    }
    expect(calls()).toBe(8); // never asked again after the switch
    expect(state.step).toBe(20);
    expect(Array.from(state.secondOrder!.seen.w!.dataSync())).toEqual([3.5, -7]); // kept as of step 6
    tf.dispose([params.w, grad.w, ...tensorsIn(state)]);
  }));

  it('releases the second-order state at the switch when asked, and leaks nothing over many steps', () => {
    const params = { a: tf.randomNormal([5, 4]), b: tf.randomNormal([4]) };
    const grads = { a: tf.randomNormal([5, 4]), b: tf.randomNormal([4]) };
    const transform = chain(hybridSwitch(doubler(), lossRateRule({ window: 10 }), { releaseOnSwitch: true }), scaleBy(-0.1));
    const before = tf.memory().numTensors;
    let state = transform.init(params);
    expect(tf.memory().numTensors).toBe(before + 2); // the two running sums
    let switchedAt = -1;
    for (let step = 0; step < 300; step++) {
      const result = applyTransform(transform, grads, state, { params, loss: fastThenPlateau(step) });
      const switched = result.state[0] as HybridSwitchState<unknown, unknown>;
      if (switchedAt < 0 && hasSwitched(switched)) {
        switchedAt = step;
        expect(switched.secondOrder).toBeNull();
      }
      // The backend after the switch keeps running: −0.1·g, or −0.1·2g before it.
      const factor = switchedAt >= 0 ? -0.1 : -0.2;
      expect(result.updates.b!.dataSync()[0]).toBeCloseTo(factor * (grads.b.dataSync()[0] as number), 6);
      state = result.state;
      tf.dispose(Object.values(result.updates));
      expect(tf.memory().numTensors).toBe(before + (switchedAt >= 0 ? 0 : 2));
    }
    expect(switchedAt).toBeGreaterThan(KNEE);
    expect(switchedAt).toBeLessThanOrEqual(KNEE + 10 + 5 + 30);
    tf.dispose([...Object.values(params), ...Object.values(grads), ...tensorsIn(state)]);
    expect(tf.memory().numTensors).toBe(before - 4);
  });

  it('takes seconds from the injected clock, or from context.extras.elapsedSeconds first', () => expectNoLeaks(() => {
    const w = tf.scalar(1);
    let now = 1000;
    const rule = lossRateRule({ per: 'second', window: 5, patience: 2 });
    const transform = hybridSwitch(doubler(), rule, { clock: () => now });
    let state = transform.init({ w });
    let switchedAt = -1;
    for (let step = 0; step < 200 && switchedAt < 0; step++) {
      now += step < 50 ? 0.1 : 10; // steps get 100× slower at step 50; the loss keeps falling per step
      const result = applyTransform(transform, { w }, state, { loss: 10 - 0.01 * step });
      state = result.state;
      if (hasSwitched(state)) switchedAt = step;
      else tf.dispose(result.updates.w!);
    }
    expect(switchedAt).toBeGreaterThan(50);
    expect(switchedAt).toBeLessThanOrEqual(50 + 5 + 2);
    expect(state.rule.seconds.filter(Number.isFinite).every((s) => s > 1000)).toBe(true);

    const clockless = hybridSwitch(doubler(), rule);
    const fresh = clockless.init({ w });
    expect(() => clockless.update({ w }, fresh, { loss: 1 })).toThrow(/^lossRateRule: per: 'second' needs finite/);
    const given = applyTransform(clockless, { w }, fresh, { loss: 1, extras: { elapsedSeconds: 12.5 } });
    expect(given.state.rule.seconds[0]).toBe(12.5);
    expect(() => clockless.update({ w }, fresh, { loss: 1, extras: { elapsedSeconds: '3' } })).toThrow(
      /^hybridSwitch: context.extras.elapsedSeconds must be a finite number/,
    );
    tf.dispose([w, ...tensorsIn(state), ...tensorsIn(fresh), ...tensorsIn(given)]);
  }));

  it('ignores NaN losses from the context and needs a loss for the loss-rate rule', () => expectNoLeaks(() => {
    const w = tf.scalar(1);
    const transform = hybridSwitch(doubler(), lossRateRule());
    let state = transform.init({ w });
    for (const loss of [Number.NaN, 2, Number.POSITIVE_INFINITY]) {
      const result = applyTransform(transform, { w }, state, { loss });
      state = result.state;
      tf.dispose(result.updates.w!);
    }
    expect(state.rule.nonFiniteLosses).toBe(2);
    expect(state.rule.observations).toBe(1);
    expect(hasSwitched(state)).toBe(false);
    expect(() => transform.update({ w }, state)).toThrow(/^lossRateRule: the observation has no loss/);
    // The manual rule needs no loss.
    const manual = hybridSwitch(doubler(), switchAtStep(0));
    const manualState = manual.init({ w });
    expect(applyTransform(manual, { w }, manualState).updates.w).toBe(w);
    tf.dispose([w, ...tensorsIn(state), ...tensorsIn(manualState)]);
  }));

  it('checkpoints and restores before and after the switch with a fresh template (default: state kept)', () => expectNoLeaks(() => {
    const w = tf.tensor1d([1, 2, 3]);
    const transform = hybridSwitch(doubler(), switchAtStep(3));
    let state = transform.init({ w });
    for (let step = 0; step < 5; step++) {
      const result = applyTransform(transform, { w }, state, { loss: 1 });
      state = result.state;
      if (step < 3) tf.dispose(result.updates.w!);
    }
    const saved = flattenState(state, 'hybrid');
    const template = transform.init({ w });
    const restored = restoreState(template, saved, 'hybrid');
    expect(restored.switchedAtStep).toBe(3);
    expect(restored.step).toBe(5);
    expect(Array.from(restored.secondOrder!.seen.w!.dataSync())).toEqual([3, 6, 9]);
    expect(transform.update({ w }, restored, { loss: 1 }).updates.w).toBe(w);
    tf.dispose([w, ...saved.filter((s) => !tensorsIn(state).includes(s.tensor)).map((s) => s.tensor)]);
    tf.dispose([...tensorsIn(state), ...tensorsIn(template), ...tensorsIn(restored)]);
  }));

  it('restores a released checkpoint with the documented exclude recipe', () => expectNoLeaks(() => {
    const w = tf.tensor1d([1, 2, 3]);
    const transform = chain(hybridSwitch(doubler(), switchAtStep(2), { releaseOnSwitch: true }), scaleBy(-1));
    let state = transform.init({ w });
    for (let step = 0; step < 4; step++) {
      const result = applyTransform(transform, { w }, state, { loss: 1 });
      state = result.state;
      tf.dispose(Object.values(result.updates));
    }
    expect(state[0].secondOrder).toBeNull();
    const saved = flattenState(state, 'opt');
    expect(saved.some((s) => s.name.includes('secondOrder'))).toBe(false);
    const template = transform.init({ w });
    const exclude = (path: string) => /(^|\/)secondOrder\//.test(path);
    expect(() => restoreState(template, saved, 'opt')).toThrow(/no entry 'opt\/0\/secondOrder\/seen\/w'/);
    const restored = restoreState(template, saved, 'opt', { exclude });
    tf.dispose(tensorsIn(template)); // the restored state owns clones
    expect(restored[0].switchedAtStep).toBe(2);
    const next = applyTransform(transform, { w }, restored, { loss: 1 });
    expect(next.state[0].secondOrder).toBeNull(); // dropped again, its clones freed
    expect(Array.from(next.updates.w!.dataSync())).toEqual([-1, -2, -3]);
    tf.dispose([w, ...Object.values(next.updates), ...tensorsIn(next.state), ...saved.map((s) => s.tensor)]);
  }));

  it('rejects what is not a transform, a rule or a clock', () => expectNoLeaks(() => {
    expect(() => hybridSwitch({} as never, switchAtStep(1))).toThrow(/^hybridSwitch: secondOrder must be a Transform/);
    expect(() => hybridSwitch(doubler(), {} as never)).toThrow(/^hybridSwitch: rule must be a SwitchRule/);
    expect(() => hybridSwitch(doubler(), switchAtStep(1), { clock: 5 as never })).toThrow(/^hybridSwitch: clock must be a function/);
    expect(() => hybridSwitch(doubler(), switchAtStep(1), { releaseOnSwitch: 'yes' as never })).toThrow(
      /^hybridSwitch: releaseOnSwitch must be a boolean/,
    );
    const w = tf.scalar(1);
    const broken = hybridSwitch(doubler(), lossRateRule({ per: 'second' }), { clock: () => Number.NaN });
    const state = broken.init({ w });
    expect(() => broken.update({ w }, state, { loss: 1 })).toThrow(/^hybridSwitch: the clock must return finite seconds/);
    tf.dispose([w, ...tensorsIn(state)]);
  }));
});
