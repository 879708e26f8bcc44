/**
 * bfloat16 ("brain float"): the upper 16 bits of a float32 — 1 sign bit, 8 exponent bits (bias
 * 127, the same range as float32), 7 fraction bits. Conversions from float32 round to nearest,
 * ties to even; conversions to float32 are exact (append 16 zero bits).
 */
import { checkNumber } from '@mkor/core';

import { checkSameLength, checkTypedArray, float32Bits, float32FromBits } from './bits';

/** Largest finite bfloat16, `(2 − 2⁻⁷)·2¹²⁷ ≈ 3.3895e38`. */
export const BFLOAT16_MAX = (2 - 2 ** -7) * 2 ** 127;
/**
 * Unit roundoff of bfloat16, `u = 2⁻⁸`: rounding a value x in the normal range changes it by at
 * most `u·|x|`.
 */
export const BFLOAT16_UNIT_ROUNDOFF = 2 ** -8;

/**
 * float32 bits → bfloat16 bits, round to nearest, ties to even: add `0x7fff` plus the lowest kept
 * bit and drop the low 16 bits (a carry bumps the exponent; from `(2 − 2⁻⁸)·2¹²⁷` up the result is
 * ±Inf). NaN keeps its sign and top 7 payload bits; one whose payload would vanish becomes quiet.
 */
function bfloat16BitsFromFloat32Bits(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) {
    const upper = bits >>> 16;
    return (upper & 0x7f) === 0 ? upper | 0x40 : upper;
  }
  const lowestKeptBit = (bits >>> 16) & 1;
  return (bits + 0x7fff + lowestKeptBit) >>> 16;
}

/**
 * Rounds a number to float32 and then to the nearest bfloat16 (ties to even), and returns the 16
 * bits as an integer in [0, 65535]. NaN stays NaN (`0x7fc0` for JavaScript's NaN).
 *
 * @example float32ToBfloat16Bits(1) === 0x3f80; float32ToBfloat16Bits(1 + 2 ** -8) === 0x3f80 (tie, to even)
 */
export function float32ToBfloat16Bits(x: number): number {
  if (typeof x !== 'number') {
    throw new TypeError(`float32ToBfloat16Bits: x must be a number, got ${typeof x}`);
  }
  return bfloat16BitsFromFloat32Bits(float32Bits(x));
}

/** The value of bfloat16 bits (an integer in [0, 65535]) as a number; exact. */
export function bfloat16BitsToFloat32(bits: number): number {
  checkNumber('bfloat16BitsToFloat32', 'bits', bits, { min: 0, max: 0xffff, integer: true });
  return float32FromBits((bits << 16) >>> 0);
}

/**
 * Encodes float32 values as bfloat16 bits, round to nearest, ties to even (element by element the
 * same as {@link float32ToBfloat16Bits}). Writes into `out` when given (same length, not
 * overlapping `values`), else into a new array; returns it. `values` is not modified.
 */
export function encodeBfloat16(values: Float32Array, out?: Uint16Array): Uint16Array {
  checkTypedArray('encodeBfloat16', 'values', values, Float32Array);
  const target = out ?? new Uint16Array(values.length);
  checkTypedArray('encodeBfloat16', 'out', target, Uint16Array);
  checkSameLength('encodeBfloat16', target, values.length);
  const words = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < words.length; i++) target[i] = bfloat16BitsFromFloat32Bits(words[i] as number);
  return target;
}

/**
 * Decodes bfloat16 bits to float32 values, exactly (each becomes the upper half of a float32).
 * Writes into `out` when given (same length, not overlapping `bits`), else into a new array;
 * returns it. `bits` is not modified.
 */
export function decodeBfloat16(bits: Uint16Array, out?: Float32Array): Float32Array {
  checkTypedArray('decodeBfloat16', 'bits', bits, Uint16Array);
  const target = out ?? new Float32Array(bits.length);
  checkTypedArray('decodeBfloat16', 'out', target, Float32Array);
  checkSameLength('decodeBfloat16', target, bits.length);
  const words = new Uint32Array(target.buffer, target.byteOffset, target.length);
  for (let i = 0; i < bits.length; i++) words[i] = (bits[i] as number) << 16;
  return target;
}
