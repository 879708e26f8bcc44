/**
 * Half-precision storage for tfjs tensors. TensorFlow.js has no float16 dtype, so a quantised
 * tensor lives outside tfjs as 16-bit patterns plus its shape, and comes back as float32.
 */
import * as tf from '@tensorflow/tfjs-core';
import { checkFloat32, checkOneOf } from '@mkor/core';

import { decodeBfloat16, encodeBfloat16 } from './bfloat16';
import { decodeFloat16, encodeFloat16 } from './float16';

/**
 * The 16-bit formats: IEEE binary16 (`'float16'`: 10 fraction bits, finite range ±65504) or
 * `'bfloat16'` (7 fraction bits, float32's range).
 */
export type HalfFormat = 'float16' | 'bfloat16';

const HALF_FORMATS = ['float16', 'bfloat16'] as const satisfies readonly HalfFormat[];

/** A float32 tensor's values rounded to a 16-bit format, two bytes per element, in row-major order. */
export interface QuantizedTensor {
  readonly format: HalfFormat;
  readonly shape: readonly number[];
  readonly bits: Uint16Array;
}

/**
 * Rounds a float32 tensor to `format` (round to nearest, ties to even; see `encodeFloat16`,
 * `encodeBfloat16`) and returns the bits with the shape. Reads the data synchronously
 * (`dataSync`); the tensor is not disposed. In float16, magnitudes from 65520 up become ±Inf and
 * magnitudes below 2⁻²⁵ become ±0.
 */
export function quantizeTensor(t: tf.Tensor, format: HalfFormat = 'float16'): QuantizedTensor {
  checkFloat32('quantizeTensor', 't', t);
  checkOneOf('quantizeTensor', 'format', format, HALF_FORMATS);
  const values = t.dataSync<'float32'>();
  const bits = format === 'float16' ? encodeFloat16(values) : encodeBfloat16(values);
  return { format, shape: t.shape.slice(), bits };
}

/** A new float32 tensor holding the values of `q`, exactly (every 16-bit value is a float32). */
export function dequantizeTensor(q: QuantizedTensor): tf.Tensor {
  if (typeof q !== 'object' || q === null) {
    throw new TypeError(`dequantizeTensor: q must be a QuantizedTensor, got ${String(q)}`);
  }
  const format = checkOneOf('dequantizeTensor', 'q.format', q.format, HALF_FORMATS);
  if (!(q.bits instanceof Uint16Array)) {
    throw new TypeError('dequantizeTensor: q.bits must be a Uint16Array');
  }
  const shape = q.shape;
  if (!Array.isArray(shape) || !shape.every((n) => Number.isInteger(n) && n >= 0)) {
    throw new RangeError(`dequantizeTensor: q.shape must be an array of non-negative integers, got ${String(shape)}`);
  }
  const size = shape.reduce((product: number, n: number) => product * n, 1);
  if (size !== q.bits.length) {
    throw new RangeError(
      `dequantizeTensor: q.shape [${shape.join(', ')}] holds ${size} elements but q.bits has ${q.bits.length}`,
    );
  }
  const values = format === 'float16' ? decodeFloat16(q.bits) : decodeBfloat16(q.bits);
  return tf.tensor(values, shape.slice(), 'float32');
}

/**
 * `dequantize(quantize(t))`: a new float32 tensor with every entry of `t` rounded to the nearest
 * `format` value (ties to even) — simulates storing `t` in half precision, e.g. the inverse
 * factors and rank-1 vectors MKOR keeps in fp16 (the setting of the paper's Lemma 3.2).
 * Reads the data synchronously; `t` is not disposed.
 */
export function roundToHalf(t: tf.Tensor, format: HalfFormat = 'float16'): tf.Tensor {
  checkFloat32('roundToHalf', 't', t);
  checkOneOf('roundToHalf', 'format', format, HALF_FORMATS);
  const values = t.dataSync<'float32'>();
  const rounded =
    format === 'float16' ? decodeFloat16(encodeFloat16(values)) : decodeBfloat16(encodeBfloat16(values));
  return tf.tensor(rounded, t.shape.slice(), 'float32');
}
