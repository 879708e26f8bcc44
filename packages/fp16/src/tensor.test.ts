import * as tf from '@tensorflow/tfjs-core';
import { BFLOAT16_FORMAT64, FLOAT16_FORMAT64, roundToFormat64 } from '@mkor/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { type QuantizedTensor, dequantizeTensor, quantizeTensor, roundToHalf } from './index';

const FORMATS64 = { float16: FLOAT16_FORMAT64, bfloat16: BFLOAT16_FORMAT64 } as const;

describe('tensor helpers', () => {
  it('quantise and dequantise round every entry to nearest-even, keep the shape, leak nothing', () => {
    const entries = [1, -2.5, 0.1, 65520, -70000, 1e-8, 2 ** -25, 1 + 2 ** -11, 3.14159, 0, -0, 1e30];
    for (const format of ['float16', 'bfloat16'] as const) {
      const t = tf.tensor3d(entries, [2, 3, 2]);
      const before = tf.memory().numTensors;
      const q = quantizeTensor(t, format);
      expect(q.format).toBe(format);
      expect(q.shape).toEqual([2, 3, 2]);
      expect(q.bits).toBeInstanceOf(Uint16Array);
      expect(q.bits.length).toBe(12);
      const back = dequantizeTensor(q);
      const rounded = roundToHalf(t, format);
      expect(tf.memory().numTensors).toBe(before + 2);
      for (const result of [back, rounded]) {
        expect(result.dtype).toBe('float32');
        expect(result.shape).toEqual([2, 3, 2]);
        const expected = entries.map((x) => roundToFormat64(Math.fround(x), FORMATS64[format]));
        Array.from(result.dataSync()).forEach((value, i) => expect(Object.is(value, expected[i]), `${format} entry ${i}`).toBe(true));
      }
      tf.dispose([back, rounded]);
      expect(tf.memory().numTensors).toBe(before);
      expect(t.isDisposed).toBe(false);
      expect(Array.from(t.dataSync())).toEqual(Array.from(Float32Array.from(entries)));
      t.dispose();
    }
  });

  it('defaults to float16, handles scalars, empty tensors and NaN', () => {
    const scalar = tf.scalar(Number.NaN);
    const empty = tf.zeros([0, 4]);
    const before = tf.memory().numTensors;
    const q = quantizeTensor(scalar);
    expect(q).toEqual({ format: 'float16', shape: [], bits: Uint16Array.of(0x7e00) });
    const roundedScalar = roundToHalf(scalar);
    expect(roundedScalar.shape).toEqual([]);
    expect(roundedScalar.dataSync()[0]).toBeNaN();
    const roundedEmpty = roundToHalf(empty, 'bfloat16');
    expect(roundedEmpty.shape).toEqual([0, 4]);
    expect(quantizeTensor(empty).bits.length).toBe(0);
    tf.dispose([roundedScalar, roundedEmpty]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([scalar, empty]);
  });

  it('roundToHalf is idempotent and matches the float64 reference on random tensors', () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ noNaN: true }), { minLength: 1, maxLength: 40 }),
        fc.constantFrom('float16' as const, 'bfloat16' as const),
        (entries, format) => {
          const before = tf.memory().numTensors;
          const t = tf.tensor1d(entries);
          const once = roundToHalf(t, format);
          const twice = roundToHalf(once, format);
          const expected = entries.map((x) => roundToFormat64(x, FORMATS64[format]));
          const onceValues = Array.from(once.dataSync());
          onceValues.forEach((value, i) => expect(Object.is(value, expected[i])).toBe(true));
          expect(Array.from(twice.dataSync())).toEqual(onceValues);
          tf.dispose([t, once, twice]);
          expect(tf.memory().numTensors).toBe(before);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('works inside tf.tidy and leaves the input alone', () => {
    const t = tf.tensor2d([[1.0001, 2], [3, 4]]);
    const before = tf.memory().numTensors;
    const sum = tf.tidy(() => tf.sum(roundToHalf(tf.mul(t, tf.scalar(2)))));
    expect(tf.memory().numTensors).toBe(before + 1);
    expect(sum.dataSync()[0]).toBe(2 + 4 + 6 + 8);
    tf.dispose([sum, t]);
  });

  it('refuses non-float32 tensors, disposed tensors, unknown formats and inconsistent quantised tensors', () => {
    const ints = tf.tensor1d([1, 2], 'int32');
    const bools = tf.tensor1d([true, false], 'bool');
    const disposed = tf.scalar(1);
    disposed.dispose();
    const good = tf.tensor1d([1, 2]);
    const before = tf.memory().numTensors;
    expect(() => quantizeTensor(ints)).toThrow('quantizeTensor: t must be a float32 tensor, got dtype int32');
    expect(() => roundToHalf(bools)).toThrow('roundToHalf: t must be a float32 tensor, got dtype bool');
    expect(() => roundToHalf(disposed)).toThrow('roundToHalf: t has been disposed');
    expect(() => quantizeTensor([1, 2] as unknown as tf.Tensor)).toThrow('quantizeTensor: t must be a tf.Tensor, got object');
    expect(() => quantizeTensor(good, 'float8' as 'float16')).toThrow(
      "quantizeTensor: format must be one of 'float16', 'bfloat16', got float8",
    );
    const q = quantizeTensor(good);
    expect(() => dequantizeTensor({ ...q, shape: [3] })).toThrow(
      'dequantizeTensor: q.shape [3] holds 3 elements but q.bits has 2',
    );
    expect(() => dequantizeTensor({ ...q, shape: [-2, -1] })).toThrow(/q.shape must be an array of non-negative integers/);
    expect(() => dequantizeTensor({ ...q, format: 'fp8' } as unknown as QuantizedTensor)).toThrow(
      "dequantizeTensor: q.format must be one of 'float16', 'bfloat16', got fp8",
    );
    expect(() => dequantizeTensor({ ...q, bits: Array.from(q.bits) } as unknown as QuantizedTensor)).toThrow(
      'dequantizeTensor: q.bits must be a Uint16Array',
    );
    expect(() => dequantizeTensor(undefined as unknown as QuantizedTensor)).toThrow(TypeError);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([ints, bools, good]);
  });
});
