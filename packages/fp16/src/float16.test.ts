import { FLOAT16_FORMAT64, formatBits64, formatValue64, roundToFormat64 } from '@mkor/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import {
  FLOAT16_MAX,
  FLOAT16_MIN_NORMAL,
  FLOAT16_MIN_SUBNORMAL,
  FLOAT16_UNIT_ROUNDOFF,
  decodeFloat16,
  encodeFloat16,
  float16BitsToFloat32,
  float32ToFloat16Bits,
} from './index';

/** float32 as seen by the float64 references: the format with 8 exponent and 23 fraction bits. */
const FLOAT32_FORMAT64 = { exponentBits: 8, fractionBits: 23 };

const ALL_HALF_BITS = Uint16Array.from({ length: 0x10000 }, (_, i) => i);

function isHalfNaN(bits: number): boolean {
  return (bits & 0x7c00) === 0x7c00 && (bits & 0x3ff) !== 0;
}

function float32FromBits(bits: number): number {
  return new Float32Array(Uint32Array.of(bits).buffer)[0] as number;
}

function bitsOfFloat32(x: number): number {
  return new Uint32Array(Float32Array.of(x).buffer)[0] as number;
}


/**
 * The float16 the float64 reference rounds x to, as bits (the documented NaN rule for NaN:
 * sign and top ten payload bits kept, the quiet bit set when nothing would be left).
 */
function referenceHalfBits(float32Bits: number): number {
  const x = float32FromBits(float32Bits);
  if (!Number.isNaN(x)) return formatBits64(roundToFormat64(x, FLOAT16_FORMAT64), FLOAT16_FORMAT64);
  const payload = (float32Bits >>> 13) & 0x3ff;
  return ((float32Bits >>> 16) & 0x8000) | 0x7c00 | (payload === 0 ? 0x200 : payload);
}

describe('float16 codec', () => {
  it('the float64 rounding reference agrees with the platform float32 rounding (Math.fround)', () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true }), (x) => {
        expect(Object.is(roundToFormat64(x, FLOAT32_FORMAT64), Math.fround(x))).toBe(true);
      }),
    );
  });

  it('decodes all 65,536 float16 bit patterns exactly and encodes each back to the same bits', () => {
    const decoded = decodeFloat16(ALL_HALF_BITS);
    const decodedBits = new Uint32Array(decoded.buffer);
    const mismatches: string[] = [];
    for (let bits = 0; bits < 0x10000; bits++) {
      const reference = formatValue64(bits, FLOAT16_FORMAT64);
      const scalar = float16BitsToFloat32(bits);
      if (!Object.is(scalar, reference) || !Object.is(decoded[bits], reference)) {
        mismatches.push(`0x${bits.toString(16)} decoded to ${scalar} / ${decoded[bits]}, expected ${reference}`);
      }
      if (isHalfNaN(bits)) {
        // NaN payloads are widened bit for bit: the fraction moves up 13 places.
        const expected = (((bits & 0x8000) << 16) | 0x7f800000 | ((bits & 0x3ff) << 13)) >>> 0;
        if (decodedBits[bits] !== expected) mismatches.push(`NaN 0x${bits.toString(16)} widened wrongly`);
      } else if (float32ToFloat16Bits(scalar) !== bits) {
        mismatches.push(`0x${bits.toString(16)} re-encoded to 0x${float32ToFloat16Bits(scalar).toString(16)}`);
      }
    }
    expect(mismatches).toEqual([]);
    // Through the arrays the round trip is bit-exact for every pattern, NaNs included.
    expect(encodeFloat16(decoded)).toEqual(ALL_HALF_BITS);
  });

  it('rounds ties to even, one float32 either side of each tie to the nearer, everywhere in the range', () => {
    // For every pair of neighbouring non-negative float16s (the last pair is 65504 and the overflow
    // point 65536), the midpoint is a float32; check it and its two float32 neighbours, both signs.
    const inputs: number[] = [];
    for (let bits = 0; bits <= 0x7bff; bits++) {
      const lower = formatValue64(bits, FLOAT16_FORMAT64);
      const upper = bits === 0x7bff ? 2 ** 16 : formatValue64(bits + 1, FLOAT16_FORMAT64);
      const midpoint = (lower + upper) / 2;
      expect(Math.fround(midpoint)).toBe(midpoint);
      const midpointBits = bitsOfFloat32(midpoint); // positive, so ±1 on the bits steps down and up
      for (const x of [midpoint, float32FromBits(midpointBits - 1), float32FromBits(midpointBits + 1)]) inputs.push(x, -x);
    }
    const values = Float32Array.from(inputs);
    const encoded = encodeFloat16(values);
    const words = new Uint32Array(values.buffer);
    const mismatches: string[] = [];
    for (let i = 0; i < values.length; i++) {
      const expected = referenceHalfBits(words[i] as number);
      const scalar = float32ToFloat16Bits(values[i] as number);
      if (encoded[i] !== expected || scalar !== expected) {
        mismatches.push(`${values[i]}: 0x${encoded[i]?.toString(16)} / 0x${scalar.toString(16)}, expected 0x${expected.toString(16)}`);
      }
    }
    expect(mismatches).toEqual([]);
  });

  it('handles the edges: zeros, subnormals, the overflow threshold 65520, infinities, NaN', () => {
    expect(float32ToFloat16Bits(0)).toBe(0x0000);
    expect(float32ToFloat16Bits(-0)).toBe(0x8000);
    expect(float32ToFloat16Bits(1)).toBe(0x3c00);
    expect(float32ToFloat16Bits(-2)).toBe(0xc000);
    expect(float32ToFloat16Bits(FLOAT16_MAX)).toBe(0x7bff);
    expect(float32ToFloat16Bits(65519.99609375)).toBe(0x7bff); // largest float32 below 65520
    expect(float32ToFloat16Bits(65520)).toBe(0x7c00); // the tie above 65504 goes to the even 2¹⁶: Inf
    expect(float32ToFloat16Bits(-65520)).toBe(0xfc00);
    expect(float32ToFloat16Bits(1e6)).toBe(0x7c00);
    expect(float32ToFloat16Bits(Infinity)).toBe(0x7c00);
    expect(float32ToFloat16Bits(-Infinity)).toBe(0xfc00);
    expect(float32ToFloat16Bits(FLOAT16_MIN_NORMAL)).toBe(0x0400);
    expect(float32ToFloat16Bits(FLOAT16_MIN_SUBNORMAL)).toBe(0x0001);
    expect(float32ToFloat16Bits(2 ** -25)).toBe(0x0000); // tie between 0 and 2⁻²⁴: to even, 0
    expect(float32ToFloat16Bits(-(2 ** -25))).toBe(0x8000);
    expect(float32ToFloat16Bits(1.5 * 2 ** -24)).toBe(0x0002); // tie between 1 and 2 units: to 2
    expect(float32ToFloat16Bits(2 ** -25 * (1 + 2 ** -23))).toBe(0x0001);
    expect(float32ToFloat16Bits(2 ** -14 - 2 ** -25)).toBe(0x0400); // rounds up out of the subnormals
    expect(float32ToFloat16Bits(2 ** -140)).toBe(0x0000);
    expect(float32ToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie: to even
    expect(float32ToFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie: to even
    expect(float32ToFloat16Bits(Number.NaN)).toBe(0x7e00);
    expect(float16BitsToFloat32(0x7c00)).toBe(Infinity);
    expect(float16BitsToFloat32(0x7bff)).toBe(FLOAT16_MAX);
    expect(float16BitsToFloat32(0x0001)).toBe(FLOAT16_MIN_SUBNORMAL);
    expect(Object.is(float16BitsToFloat32(0x8000), -0)).toBe(true);
    expect(float16BitsToFloat32(0x7e00)).toBeNaN();
    // NaNs through the arrays: the quiet NaN and payloads that fit survive; a payload only in the
    // low 13 bits becomes the quiet NaN of the same sign, never Inf.
    const nans = new Float32Array(Uint32Array.of(0x7fc00000, 0xffc00000, 0x7f802000, 0x7f800001, 0xff800fff).buffer);
    expect(Array.from(encodeFloat16(nans))).toEqual([0x7e00, 0xfe00, 0x7c01, 0x7e00, 0xfe00]);
  });

  it('matches the float64 reference on random float32 values and random bit patterns', () => {
    const check = (x: number): void => {
      const bits = bitsOfFloat32(x);
      const expected = referenceHalfBits(bits);
      const scalar = float32ToFloat16Bits(x);
      if (Number.isNaN(x)) expect(isHalfNaN(scalar)).toBe(true);
      else expect(scalar).toBe(expected);
      expect(encodeFloat16(new Float32Array(Uint32Array.of(bits).buffer))[0]).toBe(expected);
    };
    fc.assert(fc.property(fc.float(), check), { numRuns: 2000 });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (bits) => check(float32FromBits(bits))),
      { numRuns: 2000 },
    );
    // The float16 range on a log scale, where most of the interesting rounding happens.
    fc.assert(
      fc.property(fc.double({ min: -26, max: 17, noNaN: true }), fc.boolean(), (log2, negative) =>
        check(Math.fround((negative ? -1 : 1) * 2 ** log2)),
      ),
      { numRuns: 2000 },
    );
  });

  it('rounding is monotone, keeps the sign and errs by at most u·|x| (normal) or 2⁻²⁵ (subnormal)', () => {
    const rounded = (x: number): number => float16BitsToFloat32(float32ToFloat16Bits(x));
    const finite = fc.float({ noNaN: true, min: -FLOAT16_MAX, max: FLOAT16_MAX });
    fc.assert(
      fc.property(finite, finite, (x, y) => {
        const [lo, hi] = x <= y ? [x, y] : [y, x];
        expect(rounded(lo)).toBeLessThanOrEqual(rounded(hi));
        const error = Math.abs(rounded(x) - x);
        const bound = Math.abs(x) >= FLOAT16_MIN_NORMAL ? FLOAT16_UNIT_ROUNDOFF * Math.abs(x) : 2 ** -25;
        expect(error).toBeLessThanOrEqual(bound);
        expect(Math.sign(rounded(x)) * Math.sign(x)).not.toBe(-1);
      }),
      { numRuns: 2000 },
    );
  });

  it('writes into a caller-owned output, reads subarray views, and never modifies its input', () => {
    const backing = new Float32Array([7, 1, 65520, -(2 ** -24), 0.1, 7]);
    const values = backing.subarray(1, 5);
    const out = new Uint16Array(4);
    expect(encodeFloat16(values, out)).toBe(out);
    expect(Array.from(out)).toEqual([0x3c00, 0x7c00, 0x8001, 0x2e66]);
    expect(Array.from(backing)).toEqual(Array.from(Float32Array.of(7, 1, 65520, -(2 ** -24), 0.1, 7)));
    const bitsBacking = Uint16Array.of(0, 0x3c00, 0xc000, 0);
    const decodedOut = new Float32Array(6).subarray(2, 4);
    expect(decodeFloat16(bitsBacking.subarray(1, 3), decodedOut)).toBe(decodedOut);
    expect(Array.from(decodedOut)).toEqual([1, -2]);
    expect(Array.from(bitsBacking)).toEqual([0, 0x3c00, 0xc000, 0]);
    expect(encodeFloat16(new Float32Array(0))).toEqual(new Uint16Array(0));
  });

  it('refuses bad arguments with messages naming the function', () => {
    expect(() => encodeFloat16([1, 2] as unknown as Float32Array)).toThrow('encodeFloat16: values must be a Float32Array, got Array');
    expect(() => encodeFloat16(new Float64Array(2) as unknown as Float32Array)).toThrow(/got Float64Array/);
    expect(() => encodeFloat16(new Float32Array(2), new Uint16Array(3))).toThrow(
      'encodeFloat16: out must have length 2 (one element per input), got 3',
    );
    expect(() => encodeFloat16(new Float32Array(2), new Int16Array(2) as unknown as Uint16Array)).toThrow(
      'encodeFloat16: out must be a Uint16Array, got Int16Array',
    );
    expect(() => decodeFloat16(new Int32Array(1) as unknown as Uint16Array)).toThrow('decodeFloat16: bits must be a Uint16Array');
    expect(() => decodeFloat16(new Uint16Array(2), new Float32Array(1))).toThrow('decodeFloat16: out must have length 2');
    expect(() => float16BitsToFloat32(0x10000)).toThrow('float16BitsToFloat32: bits must be an integer in [0, 65535], got 65536');
    expect(() => float16BitsToFloat32(1.5)).toThrow(RangeError);
    expect(() => float32ToFloat16Bits('1' as unknown as number)).toThrow('float32ToFloat16Bits: x must be a number, got string');
  });
});
