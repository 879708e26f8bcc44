import { describe, expect, it } from 'vitest';

import { cosineDecay, exponentialDecay, linearSchedule, resolveHyperparameter, withWarmup } from './schedule';

describe('schedules', () => {
  it('match their closed forms', () => {
    expect(linearSchedule(1, 0, 4)(2)).toBeCloseTo(0.5);
    expect(linearSchedule(1, 0, 4)(10)).toBe(0);
    expect(exponentialDecay(2, 0.5, 10)(20)).toBeCloseTo(0.5);
    expect(cosineDecay(1, 10)(0)).toBe(1);
    expect(cosineDecay(1, 10, 0.1)(10)).toBeCloseTo(0.1);
    expect(cosineDecay(1, 10)(5)).toBeCloseTo(0.5);
    const warm = withWarmup(0.1, 4);
    [0.025, 0.05, 0.075, 0.1, 0.1, 0.1].forEach((expected, i) => {
      expect(warm([0, 1, 2, 3, 4, 100][i]!)).toBeCloseTo(expected, 12);
    });
  });

  it('refuse bad arguments with clear errors', () => {
    expect(() => linearSchedule(1, 0, 0)).toThrow(/steps must be a positive integer/);
    expect(() => cosineDecay(1, 2.5)).toThrow(RangeError);
    expect(() => withWarmup(1, -1)).toThrow(/warmupSteps/);
    expect(() => resolveHyperparameter(Number.POSITIVE_INFINITY, 0, 'lr')).toThrow(/lr must be a finite number/);
  });
});
