/**
 * IEEE 754 binary16 ("half precision", fp16): 1 sign bit, 5 exponent bits (bias 15), 10 fraction
 * bits. Conversions from float32 round to nearest, ties to even; conversions to float32 are exact.
 *
 * Everything works on the raw bits through `Uint32Array` views of the float32 data, so NaN
 * payloads survive and the array paths allocate nothing per element.
 */
import { checkNumber } from '@mkor/core';

import { checkSameLength, checkTypedArray, float32Bits, float32FromBits } from './bits';

/** Largest finite float16, `(2 − 2⁻¹⁰)·2¹⁵ = 65504`. */
export const FLOAT16_MAX = 65504;
/** Smallest positive normal float16, `2⁻¹⁴`. */
export const FLOAT16_MIN_NORMAL = 2 ** -14;
/** Smallest positive subnormal float16, `2⁻²⁴`. */
export const FLOAT16_MIN_SUBNORMAL = 2 ** -24;
/**
 * Unit roundoff of float16, `u = 2⁻¹¹`: rounding a value x in the normal range changes it by at most
 * `u·|x|`; below `FLOAT16_MIN_NORMAL` the absolute error is at most `2⁻²⁵`.
 */
export const FLOAT16_UNIT_ROUNDOFF = 2 ** -11;

/** Bits of the float32 smallest normal float16, 2⁻¹⁴: below it the result is subnormal or zero. */
const MIN_NORMAL_AS_FLOAT32_BITS = 0x38800000;
/** Bits of the float32 2¹⁶: from here up the result is ±Inf (or NaN). */
const OVERFLOW_AS_FLOAT32_BITS = 0x47800000;
const FLOAT32_INFINITY_BITS = 0x7f800000;
/** Difference of the exponent biases, (127 − 15), placed in the float32 exponent field. */
const REBIAS = (127 - 15) << 23;

/**
 * float32 bits → float16 bits, round to nearest, ties to even.
 *
 * - |x| ≥ 2¹⁶, ±Inf, NaN: ±Inf, or a NaN keeping the top 10 payload bits (the quiet bit included);
 *   a NaN whose payload would vanish becomes the quiet NaN.
 * - 2⁻¹⁴ ≤ |x| < 2¹⁶: drop 13 fraction bits with a rounding bias of 0xfff plus the lowest kept bit
 *   (that is what breaks ties towards even); a carry out of the fraction bumps the exponent, which
 *   is also how values from 65520 up overflow to Inf.
 * - |x| < 2⁻¹⁴: the float16 is a multiple of 2⁻²⁴; shift the 24-bit significand right with
 *   round-half-even.
 */
function float16BitsFromFloat32Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const magnitude = bits & 0x7fffffff;
  if (magnitude >= OVERFLOW_AS_FLOAT32_BITS) {
    if (magnitude <= FLOAT32_INFINITY_BITS) return sign | 0x7c00;
    const payload = (magnitude >>> 13) & 0x3ff;
    return sign | 0x7c00 | (payload === 0 ? 0x200 : payload);
  }
  if (magnitude >= MIN_NORMAL_AS_FLOAT32_BITS) {
    const lowestKeptBit = (magnitude >>> 13) & 1;
    return sign | ((magnitude - REBIAS + 0xfff + lowestKeptBit) >>> 13);
  }
  const exponent = magnitude >>> 23;
  // value = significand·2^(exponent − 150) and the result counts units of 2⁻²⁴, so shift right by
  // 126 − exponent (≥ 14). From a shift of 25 on the value is below 2⁻²⁶: zero.
  const shift = 126 - exponent;
  if (shift > 24) return sign;
  const significand = (magnitude & 0x7fffff) | 0x800000;
  const kept = significand >>> shift;
  const dropped = significand & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  const roundUp = dropped > half || (dropped === half && (kept & 1) === 1) ? 1 : 0;
  return sign | (kept + roundUp);
}

/** float16 bits → float32 bits, exact (NaN payloads kept bit for bit). */
function float32BitsFromFloat16Bits(bits: number): number {
  const sign = (bits & 0x8000) << 16;
  const exponent = (bits >>> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0x1f) return (sign | FLOAT32_INFINITY_BITS | (fraction << 13)) >>> 0;
  if (exponent !== 0) return (sign | (((exponent + 112) << 23) | (fraction << 13))) >>> 0;
  if (fraction === 0) return sign >>> 0;
  // Subnormal: fraction·2⁻²⁴. Normalise: shift the leading one up to bit 10.
  const leadingZeros = Math.clz32(fraction) - 21;
  const normalised = (fraction << leadingZeros) & 0x3ff;
  return (sign | ((113 - leadingZeros) << 23) | (normalised << 13)) >>> 0;
}

let decodeTable: Uint32Array | undefined;

/** The 65,536 float32 bit patterns of all float16 values (256 KiB), built on first use. */
function float16DecodeTable(): Uint32Array {
  if (decodeTable === undefined) {
    decodeTable = new Uint32Array(0x10000);
    for (let bits = 0; bits < 0x10000; bits++) decodeTable[bits] = float32BitsFromFloat16Bits(bits);
  }
  return decodeTable;
}

/**
 * Rounds a number to float32 and then to the nearest float16 (ties to even), and returns the 16
 * bits as an integer in [0, 65535]. Magnitudes from 65520 up become ±Inf; magnitudes up to 2⁻²⁵
 * become ±0 (the sign is kept); NaN becomes the quiet NaN `0x7e00` (or `0xfe00`).
 *
 * @example float32ToFloat16Bits(1) === 0x3c00; float32ToFloat16Bits(65520) === 0x7c00
 */
export function float32ToFloat16Bits(x: number): number {
  if (typeof x !== 'number') {
    throw new TypeError(`float32ToFloat16Bits: x must be a number, got ${typeof x}`);
  }
  return float16BitsFromFloat32Bits(float32Bits(x));
}

/**
 * The value of float16 bits (an integer in [0, 65535]) as a number; exact, since every float16 is
 * a float32. `0x7c00` is Inf, `0x7e00` NaN, `0x0001` the smallest subnormal 2⁻²⁴.
 */
export function float16BitsToFloat32(bits: number): number {
  checkNumber('float16BitsToFloat32', 'bits', bits, { min: 0, max: 0xffff, integer: true });
  return float32FromBits(float16DecodeTable()[bits] as number);
}

/**
 * Encodes float32 values as float16 bits, round to nearest, ties to even (element by element the
 * same as {@link float32ToFloat16Bits}, NaN payloads kept where they fit). Writes into `out` when
 * given (same length, not overlapping `values`), else into a new array; returns it.
 * `values` is not modified.
 */
export function encodeFloat16(values: Float32Array, out?: Uint16Array): Uint16Array {
  checkTypedArray('encodeFloat16', 'values', values, Float32Array);
  const target = out ?? new Uint16Array(values.length);
  checkTypedArray('encodeFloat16', 'out', target, Uint16Array);
  checkSameLength('encodeFloat16', target, values.length);
  const words = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < words.length; i++) target[i] = float16BitsFromFloat32Bits(words[i] as number);
  return target;
}

/**
 * Decodes float16 bits to float32 values, exactly, by a 65,536-entry lookup table (NaN bits are
 * copied as they are). Writes into `out` when given (same length, not overlapping `bits`), else
 * into a new array; returns it. `bits` is not modified.
 */
export function decodeFloat16(bits: Uint16Array, out?: Float32Array): Float32Array {
  checkTypedArray('decodeFloat16', 'bits', bits, Uint16Array);
  const target = out ?? new Float32Array(bits.length);
  checkTypedArray('decodeFloat16', 'out', target, Float32Array);
  checkSameLength('decodeFloat16', target, bits.length);
  const table = float16DecodeTable();
  const words = new Uint32Array(target.buffer, target.byteOffset, target.length);
  for (let i = 0; i < bits.length; i++) words[i] = table[bits[i] as number] as number;
  return target;
}
