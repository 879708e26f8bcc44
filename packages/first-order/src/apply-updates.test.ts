import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { applyUpdates } from './apply-updates';

describe('applyUpdates', () => {
  it('adds the updates to the variables in place and leaves the updates alive', () => {
    const w = tf.tidy(() => tf.variable(tf.tensor1d([1, 2]), true, 'applyUpdates/w'));
    const b = tf.tidy(() => tf.variable(tf.scalar(3), true, 'applyUpdates/b'));
    const updates = { 'applyUpdates/w': tf.tensor1d([0.5, -1]) };
    const before = tf.memory().numTensors;
    applyUpdates({ 'applyUpdates/w': w, 'applyUpdates/b': b }, updates);
    expect(tf.memory().numTensors).toBe(before);
    expect(Array.from(w.dataSync())).toEqual([1.5, 1]);
    expect(b.dataSync()[0]).toBe(3);
    expect(updates['applyUpdates/w'].isDisposed).toBe(false);
    tf.dispose([w, b, updates['applyUpdates/w']]);
  });

  it('changes nothing when any update is bad', () => {
    const w = tf.tidy(() => tf.variable(tf.tensor1d([1, 2]), true, 'applyUpdates/w2'));
    const good = tf.tensor1d([1, 1]);
    const wrongShape = tf.tensor1d([1, 1, 1]);
    expect(() => applyUpdates({ w }, { w: good, missing: good })).toThrow(/^applyUpdates: there is no tf.Variable named 'missing'/);
    expect(() => applyUpdates({ w, v: w }, { w: good, v: wrongShape })).toThrow(
      /^applyUpdates: the update of 'v' has shape \[3\], the variable \[2\]/,
    );
    expect(Array.from(w.dataSync())).toEqual([1, 2]);
    tf.dispose([w, good, wrongShape]);
  });
});
