import { type Conv2dReferenceOptions, countLeakedTensors, im2col64, matrix, rowMean64 } from '@mkor/testing';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { conv2dGeometry, conv2dInputVector, conv2dOutputGradVector } from './index';

const UNIT_ROUNDOFF = 2 ** -24;

type Shape4 = [number, number, number, number];

function randomInput(shape: Shape4, seed: number): tf.Tensor4D {
  const size = shape.reduce((a, b) => a * b, 1);
  // Deterministic values in (−1, 1) with a non-zero mean, so the statistic is not trivially small.
  return tf.tensor4d(Float32Array.from({ length: size }, (_, i) => Math.sin(i * 12.9898 + seed) * 0.8 + 0.2), shape);
}

/** The float64 reference: the mean row of the explicit im2col matrix. */
function referenceVector(input: tf.Tensor4D, options: Conv2dReferenceOptions): Float64Array {
  return rowMean64(im2col64(input.dataSync(), input.shape as Shape4, options));
}

/**
 * tfjs's own im2col: tf.conv2d with the identity kernel `[kh, kw, cin, kh·kw·cin]` copies patch
 * entry (i, j, c) into output channel (i·kw + j)·cin + c, with tfjs's padding arithmetic.
 * (tf.conv2d refuses strides and dilations both above 1.)
 */
function tfjsPatchMean(input: tf.Tensor4D, options: Conv2dReferenceOptions): Float32Array {
  return tf.tidy(() => {
    const [kh, kw] = options.kernelSize;
    const channels = input.shape[3];
    const entries = kh * kw * channels;
    const kernel = tf.reshape(tf.eye(entries), [kh, kw, channels, entries]) as tf.Tensor4D;
    const patches = tf.conv2d(input, kernel, options.strides as [number, number], options.padding, 'NHWC', options.dilationRate as [number, number]);
    return tf.mean(tf.reshape(patches, [-1, entries]), 0).dataSync() as Float32Array;
  });
}

/**
 * Each entry is a float32 mean of n = batch·positions values of magnitude ≤ 1 (the batch mean,
 * two 0/1 matrix products, a division): the error stays below (n + 3)·u, which the bound uses.
 */
function expectClose(got: ArrayLike<number>, expected: ArrayLike<number>, rows: number): void {
  expect(got.length).toBe(expected.length);
  const tolerance = (rows + 3) * UNIT_ROUNDOFF;
  for (let i = 0; i < expected.length; i++) {
    expect(Math.abs((got[i] as number) - (expected[i] as number))).toBeLessThanOrEqual(tolerance);
  }
}

const cases: { name: string; shape: Shape4; options: Conv2dReferenceOptions }[] = [
  { name: '3×3 same', shape: [2, 5, 6, 3], options: { kernelSize: [3, 3], strides: [1, 1], dilationRate: [1, 1], padding: 'same' } },
  { name: '3×3 valid', shape: [2, 5, 6, 3], options: { kernelSize: [3, 3], strides: [1, 1], dilationRate: [1, 1], padding: 'valid' } },
  { name: '2×2 same (even kernel: extra zero after)', shape: [1, 5, 4, 2], options: { kernelSize: [2, 2], strides: [1, 1], dilationRate: [1, 1], padding: 'same' } },
  { name: '4×2 same stride 2', shape: [2, 7, 6, 2], options: { kernelSize: [4, 2], strides: [2, 2], dilationRate: [1, 1], padding: 'same' } },
  { name: '3×3 same stride 2, even input', shape: [3, 8, 8, 1], options: { kernelSize: [3, 3], strides: [2, 2], dilationRate: [1, 1], padding: 'same' } },
  { name: '3×3 valid stride [2, 3]', shape: [2, 9, 10, 2], options: { kernelSize: [3, 3], strides: [2, 3], dilationRate: [1, 1], padding: 'valid' } },
  { name: '3×3 same dilation 2', shape: [2, 6, 7, 2], options: { kernelSize: [3, 3], strides: [1, 1], dilationRate: [2, 2], padding: 'same' } },
  { name: '2×3 valid dilation [3, 2]', shape: [1, 8, 9, 3], options: { kernelSize: [2, 3], strides: [1, 1], dilationRate: [3, 2], padding: 'valid' } },
  { name: '5×5 same on a 3×2 input (kernel wider than the input)', shape: [2, 3, 2, 2], options: { kernelSize: [5, 5], strides: [1, 1], dilationRate: [1, 1], padding: 'same' } },
  { name: '1×1', shape: [2, 4, 3, 5], options: { kernelSize: [1, 1], strides: [1, 1], dilationRate: [1, 1], padding: 'valid' } },
];

describe('conv2dInputVector', () => {
  for (const { name, shape, options } of cases) {
    it(`matches explicit im2col in float64 and tf.conv2d's own patches: ${name}`, () => {
      const input = randomInput(shape, shape[1]);
      const expected = referenceVector(input, options);
      const tfjs = tfjsPatchMean(input, options);
      const { result, leaked } = countLeakedTensors(
        () => {
          const a = conv2dInputVector(input, options);
          return { tensor: a, values: a.dataSync().slice() };
        },
        ({ tensor }) => tensor.dispose(),
      );
      expect(leaked).toBe(0);
      expect(input.isDisposed).toBe(false);
      const rows = im2col64(input.dataSync(), shape, options).rows;
      expectClose(result.values, expected, rows);
      expectClose(result.values, tfjs, 2 * rows);
      input.dispose();
    });
  }

  it('agrees with the float64 im2col reference on random geometries, strides and dilation together', () => {
    fc.assert(
      fc.property(
        fc.record({
          batch: fc.integer({ min: 1, max: 3 }),
          height: fc.integer({ min: 1, max: 9 }),
          width: fc.integer({ min: 1, max: 9 }),
          channels: fc.integer({ min: 1, max: 3 }),
          kernelSize: fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 })),
          strides: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
          dilationRate: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
          padding: fc.constantFrom('valid' as const, 'same' as const),
          appendOne: fc.boolean(),
        }),
        ({ batch, height, width, channels, appendOne, ...geometry }) => {
          const shape: Shape4 = [batch, height, width, channels];
          const input = randomInput(shape, height * 31 + width);
          const fits = (size: number, k: number, d: number): boolean => geometry.padding === 'same' || size >= (k - 1) * d + 1;
          if (!fits(height, geometry.kernelSize[0], geometry.dilationRate[0]) || !fits(width, geometry.kernelSize[1], geometry.dilationRate[1])) {
            expect(() => conv2dInputVector(input, geometry)).toThrow(/conv2dInputVector: kernelSize .* does not fit/);
            input.dispose();
            return;
          }
          const patches = im2col64(input.dataSync(), shape, geometry);
          const expected = [...rowMean64(patches), ...(appendOne ? [1] : [])];
          const before = tf.memory().numTensors;
          const a = conv2dInputVector(input, { ...geometry, appendOne });
          expectClose(a.dataSync(), expected, patches.rows);
          a.dispose();
          expect(tf.memory().numTensors).toBe(before);
          input.dispose();
        },
      ),
      { numRuns: 80 },
    );
  });

  it('accepts single numbers like Keras, clamps, and appends the bias 1', () => {
    const input = tf.mul(randomInput([2, 4, 4, 2], 7), 50) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    const pair = conv2dInputVector(input, { kernelSize: [3, 3], strides: [2, 2], padding: 'same' });
    const single = conv2dInputVector(input, { kernelSize: 3, strides: 2, padding: 'same' });
    const clamped = conv2dInputVector(input, { kernelSize: 3, strides: 2, padding: 'same', clamp: 5, appendOne: true });
    expect(Array.from(single.dataSync())).toEqual(Array.from(pair.dataSync()));
    const expected = [...pair.dataSync()].map((v) => Math.min(5, Math.max(-5, v)));
    expect(Array.from(clamped.dataSync())).toEqual([...expected, 1]);
    expect(clamped.shape).toEqual([3 * 3 * 2 + 1]);
    tf.dispose([pair, single, clamped]);
    expect(tf.memory().numTensors).toBe(before);
    input.dispose();
  });

  it('refuses bad input and geometry', () => {
    const input = tf.zeros([1, 4, 4, 2]) as tf.Tensor4D;
    const rank3 = tf.zeros([4, 4, 2]);
    const before = tf.memory().numTensors;
    expect(() => conv2dInputVector(rank3 as unknown as tf.Tensor4D, { kernelSize: [3, 3] })).toThrow(
      'conv2dInputVector: input must have rank 4 [batch, height, width, channels], got shape [4, 4, 2]',
    );
    expect(() => conv2dInputVector(input, { kernelSize: [0, 3] })).toThrow('conv2dInputVector: kernelSize[0] must be an integer in [1, ∞), got 0');
    expect(() => conv2dInputVector(input, { kernelSize: [2.5, 3] })).toThrow(/conv2dInputVector: kernelSize\[0\]/);
    expect(() => conv2dInputVector(input, { kernelSize: [3] as unknown as [number, number] })).toThrow(
      'conv2dInputVector: kernelSize must be a number or a pair [height, width], got [3]',
    );
    expect(() => conv2dInputVector(input, undefined as unknown as { kernelSize: [number, number] })).toThrow(
      'conv2dInputVector: options with a kernelSize are required',
    );
    expect(() => conv2dInputVector(input, { kernelSize: [3, 3], strides: [1, 0] })).toThrow(/conv2dInputVector: strides\[1\]/);
    expect(() => conv2dInputVector(input, { kernelSize: [3, 3], dilationRate: [-1, 1] })).toThrow(/conv2dInputVector: dilationRate\[0\]/);
    expect(() => conv2dInputVector(input, { kernelSize: [3, 3], padding: 'causal' as 'same' })).toThrow(
      "conv2dInputVector: padding must be one of 'valid', 'same', got causal",
    );
    expect(() => conv2dInputVector(input, { kernelSize: [3, 3], dilationRate: [2, 1] })).toThrow(
      "conv2dInputVector: kernelSize [3, 3] with dilationRate [2, 1] does not fit an input of spatial size 4×4 with padding 'valid'",
    );
    expect(() => conv2dInputVector(input, { kernelSize: [3, 3], clamp: Number.NaN })).toThrow('conv2dInputVector: clamp must be (0, ∞), got NaN');
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([input, rank3]);
  });
});

describe('conv2dGeometry', () => {
  it("gives tf.conv2d's output size for every padding, stride and dilation it accepts", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 3 }),
        fc.boolean(),
        fc.constantFrom('valid' as const, 'same' as const),
        (height, width, k, step, dilate, padding) => {
          const strides: [number, number] = dilate ? [1, 1] : [step, step];
          const dilationRate: [number, number] = dilate ? [step, step] : [1, 1];
          if (padding === 'valid' && Math.min(height, width) < (k - 1) * dilationRate[0] + 1) return;
          const g = conv2dGeometry(height, width, { kernelSize: [k, k], strides, dilationRate, padding });
          const shape = tf.tidy(() =>
            tf.conv2d(tf.zeros([1, height, width, 1]) as tf.Tensor4D, tf.zeros([k, k, 1, 1]) as tf.Tensor4D, strides, padding, 'NHWC', dilationRate).shape,
          );
          expect([g.outHeight, g.outWidth]).toEqual([shape[1], shape[2]]);
        },
      ),
      { numRuns: 120 },
    );
  });

  it('places the smaller half of odd padding first, as TensorFlow does', () => {
    // in 5, k 2, stride 1: 1 zero in total, none before; in 8, k 4, stride 2: out 4, pad 2 → 1 before.
    expect(conv2dGeometry(5, 8, { kernelSize: [2, 4], strides: [1, 2], padding: 'same' })).toMatchObject({
      outHeight: 5,
      outWidth: 4,
      padTop: 0,
      padLeft: 1,
    });
  });
});

describe('conv2dOutputGradVector', () => {
  it('is the mean over batch and positions, × n for sum, clamped', () => {
    const dy = randomInput([3, 4, 5, 6], 3);
    const rows = matrix(3 * 4 * 5, 6, dy.dataSync());
    const mean = rowMean64(rows);
    const before = tf.memory().numTensors;
    const g = conv2dOutputGradVector(dy);
    const summed = conv2dOutputGradVector(dy, { scale: 'sum' });
    const clamped = conv2dOutputGradVector(dy, { scale: 'sum', clamp: 1 });
    expectClose(g.dataSync(), mean, rows.rows);
    // 'sum' multiplies the mean by n = 60: the absolute bound scales by n.
    const sumTolerance = (rows.rows + 3) * UNIT_ROUNDOFF * rows.rows;
    summed.dataSync().forEach((v, i) => expect(Math.abs(v - (mean[i] as number) * 60)).toBeLessThanOrEqual(sumTolerance));
    clamped.dataSync().forEach((v, i) => expect(v).toBe(Math.min(1, Math.max(-1, summed.dataSync()[i] as number))));
    tf.dispose([g, summed, clamped]);
    expect(tf.memory().numTensors).toBe(before);
    expect(dy.isDisposed).toBe(false);
    dy.dispose();
  });

  it('refuses bad input', () => {
    const dy = tf.zeros([2, 3]);
    expect(() => conv2dOutputGradVector(dy as unknown as tf.Tensor4D)).toThrow(
      'conv2dOutputGradVector: dy must have rank 4 [batch, height, width, channels], got shape [2, 3]',
    );
    const dy5 = tf.zeros([1, 1, 1, 1, 2]);
    expect(() => conv2dOutputGradVector(dy5 as unknown as tf.Tensor4D)).toThrow('conv2dOutputGradVector: dy must have rank 4');
    const dy4 = tf.zeros([1, 2, 2, 3]) as tf.Tensor4D;
    expect(() => conv2dOutputGradVector(dy4, { scale: 'total' as 'sum' })).toThrow(/conv2dOutputGradVector: scale must be one of/);
    expect(() => conv2dOutputGradVector(dy4, { clamp: -1 })).toThrow(/conv2dOutputGradVector: clamp/);
    tf.dispose([dy, dy5, dy4]);
  });
});
