import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { ADD_ALL_GROUP_SIZE, addAll } from './add-all';

const UNIT_ROUNDOFF = 2 ** -24;

afterEach(() => {
  vi.restoreAllMocks();
});

/** How many inputs each AddN kernel run by `run` got. */
function addNInputCounts(run: () => void): number[] {
  const engine = tf.engine();
  const runKernel = engine.runKernel.bind(engine);
  const counts: number[] = [];
  vi.spyOn(engine, 'runKernel').mockImplementation((name, inputs, attrs) => {
    if (name === 'AddN') counts.push(Object.keys(inputs).length);
    return runKernel(name, inputs, attrs);
  });
  run();
  vi.restoreAllMocks();
  return counts;
}

describe('addAll', () => {
  it(`sums 1 to 40 tensors exactly where float32 can, with no AddN of more than ${ADD_ALL_GROUP_SIZE} inputs`, () => {
    for (let n = 1; n <= 40; n++) {
      const tensors = Array.from({ length: n }, (_, i) => tf.tensor2d([i, -2 * i - 1, 3, i * i], [2, 2]));
      const before = tf.memory().numTensors;
      let sum: tf.Tensor2D | undefined;
      const counts = addNInputCounts(() => (sum = addAll(tensors)));
      const indices = Array.from({ length: n }, (_, i) => i);
      const reference = [indices.reduce((s, i) => s + i, 0), indices.reduce((s, i) => s - 2 * i - 1, 0), 3 * n, indices.reduce((s, i) => s + i * i, 0)];
      expect(Array.from((sum as tf.Tensor2D).dataSync()), `n = ${n}`).toEqual(reference);
      expect(sum?.shape).toEqual([2, 2]);
      expect(Math.max(0, ...counts), `n = ${n}: inputs of one AddN`).toBeLessThanOrEqual(ADD_ALL_GROUP_SIZE);
      // A tree of groups: n − 1 additions in all.
      expect(counts.reduce((s, c) => s + c - 1, 0), `n = ${n}: additions`).toBe(n - 1);
      tf.dispose(sum);
      expect(tf.memory().numTensors, `n = ${n}`).toBe(before);
      tf.dispose(tensors);
    }
  });

  it('agrees with the float64 sum to (n − 1)·u·Σ|x| for any values', () => {
    const before = tf.memory().numTensors;
    fc.assert(
      fc.property(fc.array(fc.array(fc.float({ noNaN: true, noDefaultInfinity: true, min: Math.fround(-1e30), max: Math.fround(1e30) }), { minLength: 3, maxLength: 3 }), { minLength: 1, maxLength: 30 }), (rows) => {
        const tensors = rows.map((row) => tf.tensor1d(row));
        const sum = addAll(tensors);
        const computed = Array.from(sum.dataSync());
        tf.dispose([...tensors, sum]);
        for (let j = 0; j < 3; j++) {
          const column = rows.map((row) => Math.fround(row[j] as number));
          const exact = column.reduce((s, x) => s + x, 0);
          const magnitude = column.reduce((s, x) => s + Math.abs(x), 0);
          expect(Math.abs((computed[j] as number) - exact)).toBeLessThanOrEqual((rows.length - 1) * UNIT_ROUNDOFF * magnitude * (1 + UNIT_ROUNDOFF) + 2 ** -149);
        }
      }),
      { numRuns: 100 },
    );
    expect(tf.memory().numTensors).toBe(before);
  });

  it('returns a tensor of its own for one input, keeps int32, and leaves its inputs alone', () => {
    const a = tf.tensor1d([1, 2], 'int32');
    const b = tf.tensor1d([3, 4], 'int32');
    const one = addAll([a]);
    const two = addAll([a, b]);
    expect(one).not.toBe(a);
    expect(two.dtype).toBe('int32');
    expect(Array.from(two.dataSync())).toEqual([4, 6]);
    a.dispose();
    expect(Array.from(one.dataSync())).toEqual([1, 2]);
    expect(b.isDisposed).toBe(false);
    tf.dispose([b, one, two]);
  });

  it('refuses an empty list and tensors of different shapes or dtypes', () => {
    const a = tf.tensor1d([1, 2]);
    const b = tf.tensor1d([1, 2, 3]);
    const c = tf.tensor1d([1, 2], 'int32');
    const before = tf.memory().numTensors;
    expect(() => addAll([])).toThrow(/addAll: tensors must hold at least one tensor, got none/);
    expect(() => addAll([a, b])).toThrow(/addAll: tensors must have one shape and dtype, got float32 \[2\] and float32 \[3\]/);
    expect(() => addAll([a, c])).toThrow(/got float32 \[2\] and int32 \[2\]/);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([a, b, c]);
  });
});
