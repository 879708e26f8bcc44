import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { selectByScalar } from './select';

describe('selectByScalar', () => {
  it('takes a or b whole, entry by entry, without letting the other branch through', () => {
    const a = tf.tensor2d([[1, Number.NaN], [Number.POSITIVE_INFINITY, -4]]);
    const b = tf.tensor2d([[5, 6], [7, 8]]);
    const yes = tf.scalar(true, 'bool');
    const no = tf.tensor1d([false], 'bool');
    const before = tf.memory().numTensors;
    const takenA = selectByScalar(yes, a, b);
    const takenB = selectByScalar(no, a, b);
    expect(Array.from(takenA.dataSync())).toEqual([1, Number.NaN, Number.POSITIVE_INFINITY, -4]);
    expect(Array.from(takenB.dataSync())).toEqual([5, 6, 7, 8]);
    expect(takenA.shape).toEqual([2, 2]);
    tf.dispose([takenA, takenB]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([a, b, yes, no]);
  });

  it('agrees with tf.where on int32 and on a condition computed on the device', () => {
    const a = tf.tensor1d([1, 2, 3], 'int32');
    const b = tf.tensor1d([4, 5, 6], 'int32');
    const condition = tf.greater(tf.scalar(2), tf.scalar(1));
    const ours = selectByScalar(condition, a, b);
    const theirs = tf.where(condition, a, b);
    expect(ours.dtype).toBe('int32');
    expect(Array.from(ours.dataSync())).toEqual(Array.from(theirs.dataSync()));
    tf.dispose([a, b, condition, ours, theirs]);
  });

  it('refuses a condition that is not one bool, and branches that differ', () => {
    const a = tf.zeros([2]);
    const b = tf.zeros([3]);
    const two = tf.tensor1d([true, false], 'bool');
    const number = tf.scalar(1);
    const yes = tf.scalar(true, 'bool');
    const before = tf.memory().numTensors;
    expect(() => selectByScalar(two, a, a)).toThrow('selectByScalar: condition must be a bool tensor with one element, got bool of shape [2]');
    expect(() => selectByScalar(number, a, a)).toThrow(/float32/);
    expect(() => selectByScalar(yes, a, b)).toThrow('a and b must have one shape and dtype');
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([a, b, two, number, yes]);
  });
});
