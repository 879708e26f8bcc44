import { flattenState, restoreState } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { type LossObservation, type SwitchRule, anyOf, lossRateRule, switchAtStep } from './rules';

/** Feeds `observations` to `rule` and returns the step it switched at (−1: never) and its last state. */
function firstSwitch<S>(rule: SwitchRule<S>, observations: Iterable<LossObservation>): { step: number; state: S } {
  let state = rule.init();
  for (const observation of observations) {
    const decision = rule.observe(state, observation);
    state = decision.state;
    if (decision.switchNow) return { step: observation.step, state };
  }
  return { step: -1, state };
}

/** `{ step, loss: curve(step) }` for steps 0 … count−1. */
function* lossCurve(curve: (step: number) => number, count: number): Generator<LossObservation> {
  for (let step = 0; step < count; step++) yield { step, loss: curve(step) };
}

/** A small deterministic generator (mulberry32) and standard normal draws from it. */
function normals(seed: number, count: number): number[] {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Array.from({ length: count }, () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform()));
}

const KNEE = 200;
/** Falls by 2 over the first 200 steps (slope 0.01), then plateaus (slope 1e-5). */
const fastThenPlateau = (step: number) => (step < KNEE ? 3 - (2 * step) / KNEE : 1 - 1e-5 * (step - KNEE));

describe('lossRateRule on synthetic loss curves', () => {
  it('switches after the knee of a fast-then-plateau curve, within the window (plus patience and smoothing lag)', () => {
    // Unsmoothed-ish (β = 0.5, lag ≈ 1): the window's mean slope drops below 10% of the best once
    // 90% of the window lies on the plateau, i.e. 18 steps after the knee, then patience 5 adds 4.
    const quick = firstSwitch(lossRateRule({ smoothing: 0.5, window: 20, patience: 5 }), lossCurve(fastThenPlateau, 1000));
    expect(quick.step).toBeGreaterThan(KNEE);
    expect(quick.step).toBeLessThanOrEqual(KNEE + 20 + 5);
    // Defaults (β = 0.9): the moving average trails the knee by a few time constants 1/(1−β) = 10.
    const smoothed = firstSwitch(lossRateRule(), lossCurve(fastThenPlateau, 1000));
    expect(smoothed.step).toBeGreaterThan(KNEE);
    expect(smoothed.step).toBeLessThanOrEqual(KNEE + 20 + 5 + 3 * 10);
    expect(smoothed.state.bestRate).toBeCloseTo(0.01, 3);
  });

  it('never switches on a steadily decreasing curve', () => {
    expect(firstSwitch(lossRateRule(), lossCurve((t) => 10 - 0.004 * t, 2000)).step).toBe(-1);
    // Exponential decay whose rate falls by e² ≈ 7.4 < 10 over the run.
    expect(firstSwitch(lossRateRule(), lossCurve((t) => 5 * Math.exp(-t / 1000), 2000)).step).toBe(-1);
  });

  it('is not triggered early by noise when it smooths (property over noise draws)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (seed) => {
        const noise = normals(seed, 1000);
        const noisy = (t: number) => 10 - 0.004 * t + 0.05 * (noise[t] as number);
        expect(firstSwitch(lossRateRule(), lossCurve(noisy, 1000)).step).toBe(-1);
      }),
      { numRuns: 50 },
    );
  });

  it('is triggered by the same noise without smoothing and patience (why they are there)', () => {
    const noise = normals(1, 1000);
    const noisy = (t: number) => 10 - 0.004 * t + 0.05 * (noise[t] as number);
    const raw = firstSwitch(lossRateRule({ smoothing: 0, patience: 1 }), lossCurve(noisy, 1000));
    expect(raw.step).toBeGreaterThanOrEqual(0);
    expect(raw.step).toBeLessThan(100);
  });

  it('measures the rate per second with the observations’ seconds', () => {
    // The loss falls by 0.004 a step throughout, but from step 300 on each step takes 50× longer.
    const observations = function* (): Generator<LossObservation> {
      let seconds = 0;
      for (let step = 0; step < 1000; step++) {
        seconds += step < 300 ? 0.1 : 5;
        yield { step, loss: 10 - 0.004 * step, seconds };
      }
    };
    expect(firstSwitch(lossRateRule({ per: 'step' }), observations()).step).toBe(-1);
    const perSecond = firstSwitch(lossRateRule({ per: 'second' }), observations());
    expect(perSecond.step).toBeGreaterThan(300);
    expect(perSecond.step).toBeLessThanOrEqual(300 + 20 + 5);
    expect(perSecond.state.bestRate).toBeCloseTo(0.04, 3);
  });

  it('uses an absolute threshold, minSteps and patience exactly', () => {
    // Every rate is ≤ 0.004 < 0.005. The first rate needs n − W ≥ 1/(1−β) = 10 losses, so it
    // comes with the 30th loss (step 29); the fifth, which exhausts the patience, at step 33.
    const linear = (t: number) => 10 - 0.004 * t;
    expect(firstSwitch(lossRateRule({ relativeTo: 'absolute', threshold: 0.005 }), lossCurve(linear, 100)).step).toBe(33);
    // Without smoothing the first rate comes with the 21st loss (step 20), the fifth at step 24.
    expect(
      firstSwitch(lossRateRule({ relativeTo: 'absolute', threshold: 0.005, smoothing: 0 }), lossCurve(linear, 100)).step,
    ).toBe(24);
    expect(
      firstSwitch(lossRateRule({ relativeTo: 'absolute', threshold: 0.005, minSteps: 60 }), lossCurve(linear, 100)).step,
    ).toBe(60);
    expect(firstSwitch(lossRateRule({ minSteps: 400 }), lossCurve(fastThenPlateau, 1000)).step).toBe(400);
  });

  it('ignores and counts NaN and ±Inf losses', () => {
    // β = 0.5: the first rate needs n − W ≥ 2, i.e. four finite losses with W = 2.
    const rule = lossRateRule({ window: 2, smoothing: 0.5 });
    const clean = firstSwitch(rule, [4, 3, 2, 1].map((loss, step) => ({ step, loss }))).state;
    const dirty = firstSwitch(
      rule,
      [4, Number.NaN, 3, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 2, 1].map((loss, step) => ({ step, loss })),
    ).state;
    expect(dirty.nonFiniteLosses).toBe(3);
    expect(dirty.observations).toBe(clean.observations);
    expect(dirty.average).toBe(clean.average);
    expect(dirty.smoothedLosses).toEqual(clean.smoothedLosses);
    // Rates per step use the steps the losses came at: (ŝ₂ − ŝ₄)/(6 − 2) here against /(3 − 1) above.
    expect(clean.rate).toBeGreaterThan(0);
    expect(dirty.rate).toBeCloseTo(clean.rate / 2, 12);
    const allNaN = firstSwitch(rule, lossCurve(() => Number.NaN, 100));
    expect(allNaN.step).toBe(-1);
    expect(allNaN.state.nonFiniteLosses).toBe(100);
  });

  it('has a plain-data state that survives a checkpoint (flattenState/restoreState)', () => {
    const rule = lossRateRule();
    const observations = [...lossCurve(fastThenPlateau, 1000)];
    const straight = firstSwitch(rule, observations).step;
    const halfway = firstSwitch(rule, observations.slice(0, 150)).state;
    const before = tf.memory().numTensors;
    const saved = flattenState(halfway, 'rule');
    const restored = restoreState(rule.init(), saved, 'rule');
    tf.dispose(saved.map((w) => w.tensor));
    expect(tf.memory().numTensors).toBe(before);
    let state = restored;
    let resumed = -1;
    for (const observation of observations.slice(150)) {
      const decision = rule.observe(state, observation);
      state = decision.state;
      if (decision.switchNow) {
        resumed = observation.step;
        break;
      }
    }
    expect(resumed).toBe(straight);
  });

  it('rejects bad options and observations with the rule name', () => {
    expect(() => lossRateRule({ smoothing: 1 })).toThrow(/^lossRateRule: smoothing must be \[0, 1\), got 1/);
    expect(() => lossRateRule({ window: 0 })).toThrow(/^lossRateRule: window must be an integer in \[1, ∞\)/);
    expect(() => lossRateRule({ window: 2.5 })).toThrow(/^lossRateRule: window/);
    expect(() => lossRateRule({ per: 'minute' as never })).toThrow(/^lossRateRule: per must be one of 'step', 'second'/);
    expect(() => lossRateRule({ threshold: 1.5 })).toThrow(/^lossRateRule: threshold must be \(0, 1\]/);
    expect(() => lossRateRule({ relativeTo: 'absolute', threshold: Number.NaN })).toThrow(/^lossRateRule: threshold/);
    expect(() => lossRateRule({ patience: 0 })).toThrow(/^lossRateRule: patience/);
    expect(() => lossRateRule({ minSteps: -1 })).toThrow(/^lossRateRule: minSteps/);
    const rule = lossRateRule({ per: 'second' });
    expect(() => rule.observe(rule.init(), { step: 0, loss: 1 })).toThrow(/^lossRateRule: per: 'second' needs finite observation.seconds/);
    expect(() => rule.observe(rule.init(), { step: 0, seconds: 1 })).toThrow(/^lossRateRule: the observation has no loss/);
    expect(() => rule.observe(rule.init(), { step: -1, loss: 1, seconds: 1 })).toThrow(/^lossRateRule: observation.step/);
  });
});

describe('switchAtStep and anyOf', () => {
  it('switches at step k exactly', () => {
    expect(firstSwitch(switchAtStep(37), lossCurve(() => 1, 100)).step).toBe(37);
    expect(firstSwitch(switchAtStep(0), lossCurve(() => 1, 100)).step).toBe(0);
    // An observation stream that skips k switches on the first step past it.
    expect(firstSwitch(switchAtStep(5), [0, 2, 4, 6, 8].map((step) => ({ step }))).step).toBe(6);
    expect(() => switchAtStep(-1)).toThrow(/^switchAtStep: step must be an integer in \[0, ∞\), got -1/);
  });

  it('anyOf switches when the first of its rules does, keeping every rule’s state current', () => {
    const combined = anyOf(lossRateRule(), switchAtStep(150));
    const early = firstSwitch(combined, lossCurve(fastThenPlateau, 1000));
    expect(early.step).toBe(150);
    expect(early.state[0].observations).toBe(151);
    const late = firstSwitch(anyOf(lossRateRule(), switchAtStep(900)), lossCurve(fastThenPlateau, 1000));
    expect(late.step).toBe(firstSwitch(lossRateRule(), lossCurve(fastThenPlateau, 1000)).step);
    expect(() => anyOf()).toThrow(/^anyOf: needs at least one rule/);
    expect(() => anyOf({} as never)).toThrow(/^anyOf: argument 0 is not a SwitchRule/);
    expect(() => combined.observe([] as never, { step: 0, loss: 1 })).toThrow(/^anyOf: state holds 0 entries for 2 rules/);
  });
});
