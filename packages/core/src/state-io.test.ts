import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { flattenState, restoreState } from './state-io';

describe('flattenState / restoreState', () => {
  it('round-trips tensors, numbers and booleans by path', () => {
    const state = { step: 7, layers: { a: { f: tf.tensor2d([[1, 2], [3, 4]]), reset: true } }, list: [tf.scalar(5), 2.5] };
    const flat = flattenState(state, 'opt');
    expect(flat.map((w) => w.name)).toEqual(['opt/step', 'opt/layers/a/f', 'opt/layers/a/reset', 'opt/list/0', 'opt/list/1']);
    const template = { step: 0, layers: { a: { f: tf.zeros([2, 2]), reset: false } }, list: [tf.scalar(0), 0] };
    const before = tf.memory().numTensors;
    const restored = restoreState(template, flat, 'opt');
    expect(tf.memory().numTensors).toBe(before + 2);
    expect(restored.step).toBe(7);
    expect(restored.layers.a.reset).toBe(true);
    expect(restored.list[1]).toBe(2.5);
    expect(Array.from(restored.layers.a.f.dataSync())).toEqual([1, 2, 3, 4]);
    expect(restored.layers.a.f).not.toBe(state.layers.a.f);
    tf.dispose([restored.layers.a.f, restored.list[0] as tf.Tensor, template.layers.a.f, template.list[0] as tf.Tensor]);
    tf.dispose(flat.map((w) => w.tensor));
  });

  it('names the missing or mismatched entry', () => {
    const template = { f: tf.zeros([2]) };
    expect(() => restoreState(template, [])).toThrow("no entry 'f'");
    const wrong = [{ name: 'f', tensor: tf.zeros([3]) }];
    expect(() => restoreState(template, wrong)).toThrow("'f' has shape [3] in the checkpoint, expected [2]");
    expect(() => flattenState({ s: 'x' })).toThrow(/cannot store a string at 's'/);
    tf.dispose([template.f, wrong[0]!.tensor]);
  });
});

describe('exclude', () => {
  it('leaves excluded paths out and restores them from the template', () => {
    const state = { step: 3, metrics: { names: ['a'] } };
    const exclude = (path: string) => path.endsWith('/metrics');
    const flat = flattenState(state, 's', { exclude });
    expect(flat.map((w) => w.name)).toEqual(['s/step']);
    const restored = restoreState({ step: 0, metrics: null }, flat, 's', { exclude });
    expect(restored).toEqual({ step: 3, metrics: null });
    tf.dispose(flat.map((w) => w.tensor));
  });
});
