import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import {
  allFinite,
  checkFinite,
  checkFloat32,
  checkHyperparameter,
  checkKnownOptions,
  checkLayerCoverage,
  checkNumber,
  checkOneOf,
  checkSpatialPair,
  checkSquareMatrix,
  checkVector,
  hyperparameterAt,
} from './validation';

describe('validation', () => {
  it('checks numbers against bounds', () => {
    expect(checkNumber('f', 'gamma', 0.5, { min: 0, max: 1, minExclusive: true, maxExclusive: true })).toBe(0.5);
    expect(() => checkNumber('f', 'gamma', 1, { min: 0, max: 1, maxExclusive: true })).toThrow('f: gamma must be [0, 1), got 1');
    expect(() => checkNumber('f', 'n', 2.5, { min: 1, integer: true })).toThrow(/an integer in \[1, ∞\)/);
    expect(() => checkNumber('f', 'x', Number.NaN)).toThrow(RangeError);
    expect(() => checkNumber('f', 'x', '3')).toThrow(/got 3/);
    expect(checkOneOf('f', 'form', 'exact', ['exact', 'paper'] as const)).toBe('exact');
    expect(() => checkOneOf('f', 'form', 'x', ['exact', 'paper'] as const)).toThrow("must be one of 'exact', 'paper'");
  });

  it('checks shapes', () => {
    const m = tf.zeros([3, 3]);
    const r = tf.zeros([3, 2]);
    const v = tf.zeros([3]);
    expect(checkSquareMatrix('f', 'inverse', m)).toBe(3);
    expect(() => checkSquareMatrix('f', 'inverse', r)).toThrow('f: inverse must be square, got shape [3, 2]');
    expect(() => checkSquareMatrix('f', 'inverse', v)).toThrow(/rank 2/);
    expect(() => checkSquareMatrix('f', 'inverse', [[1]])).toThrow(TypeError);
    expect(() => checkVector('f', 'v', v, 4)).toThrow('f: v must have length 4, got shape [3]');
    tf.dispose([m, r, v]);
    expect(() => checkSquareMatrix('f', 'inverse', m)).toThrow(/disposed/);
  });

  it('detects NaN and Inf without leaking', () => {
    const good = tf.tensor1d([1, -2, 3e30]);
    const nan = tf.tensor1d([1, Number.NaN]);
    const inf = tf.tensor2d([[1, Number.NEGATIVE_INFINITY]]);
    const before = tf.memory().numTensors;
    expect(allFinite(good)).toBe(true);
    expect(allFinite(nan)).toBe(false);
    expect(allFinite(inf)).toBe(false);
    expect(() => checkFinite('f', 'v', nan)).toThrow('f: v contains NaN or Inf');
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([good, nan, inf]);
  });
});

describe('checkSpatialPair', () => {
  it('accepts a number or a pair of positive integers, and says what is wrong otherwise', () => {
    expect(checkSpatialPair('f', 'strides', 2)).toEqual([2, 2]);
    expect(checkSpatialPair('f', 'strides', [1, 3])).toEqual([1, 3]);
    expect(() => checkSpatialPair('f', 'strides', [1, 2, 3])).toThrow('f: strides must be a number or a pair [height, width], got [1,2,3]');
    expect(() => checkSpatialPair('f', 'kernelSize', [0, 2])).toThrow(/kernelSize\[0\] must be an integer in \[1, ∞\)/);
    expect(() => checkSpatialPair('f', 'kernelSize', 1.5)).toThrow(/kernelSize\[0\]/);
  });
});

describe('checkLayerCoverage', () => {
  it('refuses layers without state and statistics of layers not preconditioned, naming them', () => {
    expect(() => checkLayerCoverage('p', ['a', 'b'], { a: {}, b: {} }, { a: {}, c: undefined })).not.toThrow();
    expect(() => checkLayerCoverage('p', ['a', 'b'], { a: {} }, {})).toThrow(/p: layer 'b' has no state: it was not known when the state was initialised/);
    expect(() => checkLayerCoverage('p', [], {}, { hidden: {} })).toThrow(
      /p: statistics came for layer 'hidden', which is not among the layers it preconditions \(none\)/,
    );
  });
});

describe('checkHyperparameter, hyperparameterAt', () => {
  it('accepts a number within bounds or a schedule, and checks a schedule value at each use', () => {
    expect(checkHyperparameter('f', 'gamma', 0.9, { min: 0, max: 1 })).toBe(0.9);
    const schedule = (step: number): number => 1 - 0.1 * step;
    expect(checkHyperparameter('f', 'gamma', schedule, { min: 0, max: 1 })).toBe(schedule);
    expect(hyperparameterAt('f', 'gamma', schedule, 2, { min: 0, max: 1, maxExclusive: true })).toBeCloseTo(0.8, 12);
    expect(() => hyperparameterAt('f', 'gamma', schedule, 0, { min: 0, max: 1, maxExclusive: true })).toThrow(
      'f: gamma must be [0, 1), got 1 (from its schedule at step 0)',
    );
    expect(() => hyperparameterAt('f', 'gamma', () => Number.NaN, 3)).toThrow('f: gamma must be (-∞, ∞), got NaN (from its schedule at step 3)');
    expect(() => checkHyperparameter('f', 'gamma', 2, { min: 0, max: 1 })).toThrow('f: gamma must be [0, 1], got 2');
    expect(() => checkHyperparameter('f', 'gamma', '0.9')).toThrow('f: gamma must be a number or a schedule (step) => number, got string');
  });
});

describe('checkKnownOptions', () => {
  it('refuses unknown options, with the new name of a renamed one', () => {
    expect(() => checkKnownOptions('mkor', { gamma: 0.9 }, ['gamma'])).not.toThrow();
    expect(() => checkKnownOptions('mkor', { gama: 0.9 }, ['gamma', 'form'])).toThrow("mkor: unknown option 'gama'; known: form, gamma");
    expect(() => checkKnownOptions('mkor', { rescale: 'none' }, ['scaling'], { rescale: 'scaling' })).toThrow(
      "mkor: unknown option 'rescale' (renamed 'scaling')",
    );
    expect(() => checkKnownOptions('mkor', { typo: undefined }, ['gamma'])).toThrow("unknown option 'typo'");
    // A key listed twice (by two option groups) is named once.
    expect(() => checkKnownOptions('mkor', { typo: 1 }, ['gamma', 'form', 'gamma'])).toThrow("mkor: unknown option 'typo'; known: form, gamma");
  });
});

describe('checkFloat32', () => {
  it('accepts a live float32 tensor and refuses anything else, naming the caller and the parameter', () => {
    const good = tf.ones([2]);
    const ints = tf.ones([2], 'int32');
    const gone = tf.ones([2]);
    gone.dispose();
    expect(() => checkFloat32('f', 'x', good)).not.toThrow();
    expect(() => checkFloat32('f', 'x', ints)).toThrow('f: x must be a float32 tensor, got dtype int32');
    expect(() => checkFloat32('f', 'x', gone)).toThrow('f: x has been disposed');
    expect(() => checkFloat32('f', 'x', [1, 2])).toThrow('f: x must be a tf.Tensor, got object');
    expect(() => checkFloat32('f', 'x', null)).toThrow('f: x must be a tf.Tensor, got null');
    tf.dispose([good, ints]);
  });
});
