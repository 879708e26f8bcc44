import { BFLOAT16_FORMAT64, formatBits64, formatValue64, roundToFormat64 } from '@mkor/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import {
  BFLOAT16_MAX,
  BFLOAT16_UNIT_ROUNDOFF,
  bfloat16BitsToFloat32,
  decodeBfloat16,
  encodeBfloat16,
  float32ToBfloat16Bits,
} from './index';

const ALL_BFLOAT16_BITS = Uint16Array.from({ length: 0x10000 }, (_, i) => i);

function isBfloat16NaN(bits: number): boolean {
  return (bits & 0x7f80) === 0x7f80 && (bits & 0x7f) !== 0;
}

function float32FromBits(bits: number): number {
  return new Float32Array(Uint32Array.of(bits).buffer)[0] as number;
}

function bitsOfFloat32(x: number): number {
  return new Uint32Array(Float32Array.of(x).buffer)[0] as number;
}

/**
 * The bfloat16 the float64 reference rounds x to, as bits (for NaN the documented rule: sign and
 * top seven payload bits kept, the quiet bit set when nothing would be left).
 */
function referenceBfloat16Bits(float32Bits: number): number {
  const x = float32FromBits(float32Bits);
  if (!Number.isNaN(x)) return formatBits64(roundToFormat64(x, BFLOAT16_FORMAT64), BFLOAT16_FORMAT64);
  const upper = float32Bits >>> 16;
  return (upper & 0x7f) === 0 ? upper | 0x40 : upper;
}

describe('bfloat16 codec', () => {
  it('decodes all 65,536 bfloat16 bit patterns exactly and encodes each back to the same bits', () => {
    const decoded = decodeBfloat16(ALL_BFLOAT16_BITS);
    const decodedBits = new Uint32Array(decoded.buffer);
    const mismatches: string[] = [];
    for (let bits = 0; bits < 0x10000; bits++) {
      const reference = formatValue64(bits, BFLOAT16_FORMAT64);
      const scalar = bfloat16BitsToFloat32(bits);
      if (!Object.is(scalar, reference) || !Object.is(decoded[bits], reference)) {
        mismatches.push(`0x${bits.toString(16)} decoded to ${scalar} / ${decoded[bits]}, expected ${reference}`);
      }
      if (decodedBits[bits] !== bits * 0x10000) mismatches.push(`0x${bits.toString(16)} is not the upper half`);
      if (!isBfloat16NaN(bits) && float32ToBfloat16Bits(scalar) !== bits) {
        mismatches.push(`0x${bits.toString(16)} re-encoded to 0x${float32ToBfloat16Bits(scalar).toString(16)}`);
      }
    }
    expect(mismatches).toEqual([]);
    expect(encodeBfloat16(decoded)).toEqual(ALL_BFLOAT16_BITS);
  });

  it('rounds ties to even, one float32 either side of each tie to the nearer, everywhere in the range', () => {
    // Neighbouring non-negative bfloat16s (the last pair is the largest finite and the overflow
    // point 2¹²⁸); each midpoint is a float32.
    const inputs: number[] = [];
    for (let bits = 0; bits <= 0x7f7f; bits++) {
      const lower = formatValue64(bits, BFLOAT16_FORMAT64);
      const upper = bits === 0x7f7f ? 2 ** 128 : formatValue64(bits + 1, BFLOAT16_FORMAT64);
      const midpoint = (lower + upper) / 2;
      const midpointBits = bitsOfFloat32(midpoint); // positive, so ±1 on the bits steps down and up
      expect(float32FromBits(midpointBits)).toBe(midpoint);
      for (const x of [midpoint, float32FromBits(midpointBits - 1), float32FromBits(midpointBits + 1)]) inputs.push(x, -x);
    }
    const values = Float32Array.from(inputs);
    const encoded = encodeBfloat16(values);
    const words = new Uint32Array(values.buffer);
    const mismatches: string[] = [];
    for (let i = 0; i < values.length; i++) {
      const expected = referenceBfloat16Bits(words[i] as number);
      const scalar = float32ToBfloat16Bits(values[i] as number);
      if (encoded[i] !== expected || scalar !== expected) {
        mismatches.push(`${values[i]}: 0x${encoded[i]?.toString(16)} / 0x${scalar.toString(16)}, expected 0x${expected.toString(16)}`);
      }
    }
    expect(mismatches).toEqual([]);
  });

  it('handles the edges: zeros, float32 subnormals, overflow to Inf, NaN', () => {
    expect(float32ToBfloat16Bits(0)).toBe(0x0000);
    expect(float32ToBfloat16Bits(-0)).toBe(0x8000);
    expect(float32ToBfloat16Bits(1)).toBe(0x3f80);
    expect(float32ToBfloat16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie: to even
    expect(float32ToBfloat16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie: to even
    expect(float32ToBfloat16Bits(BFLOAT16_MAX)).toBe(0x7f7f);
    expect(float32ToBfloat16Bits(3.4028234663852886e38)).toBe(0x7f80); // float32 max rounds to Inf
    expect(float32ToBfloat16Bits(-Infinity)).toBe(0xff80);
    expect(float32ToBfloat16Bits(2 ** -149)).toBe(0x0000); // 2⁻¹⁴⁹ is below half of 2⁻¹³³
    expect(float32ToBfloat16Bits(2 ** -133)).toBe(0x0001);
    expect(float32ToBfloat16Bits(Number.NaN)).toBe(0x7fc0);
    expect(bfloat16BitsToFloat32(0x7f80)).toBe(Infinity);
    expect(bfloat16BitsToFloat32(0xc000)).toBe(-2);
    expect(bfloat16BitsToFloat32(0x7fc1)).toBeNaN();
    // A NaN whose payload sits only in the low 16 bits must not turn into Inf.
    const nans = new Float32Array(Uint32Array.of(0x7fc00000, 0x7f800001, 0xff80ffff, 0x7fa00000).buffer);
    expect(Array.from(encodeBfloat16(nans))).toEqual([0x7fc0, 0x7fc0, 0xffc0, 0x7fa0]);
  });

  it('matches the float64 reference on random float32 values and random bit patterns', () => {
    const check = (bits: number): void => {
      const x = float32FromBits(bits);
      const expected = referenceBfloat16Bits(bits);
      const scalar = float32ToBfloat16Bits(x);
      if (Number.isNaN(x)) expect(isBfloat16NaN(scalar)).toBe(true);
      else expect(scalar).toBe(expected);
      expect(encodeBfloat16(new Float32Array(Uint32Array.of(bits).buffer))[0]).toBe(expected);
    };
    fc.assert(fc.property(fc.float(), (x) => check(bitsOfFloat32(x))), { numRuns: 2000 });
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), check), { numRuns: 2000 });
  });

  it('rounding is monotone and errs by at most u·|x| in the normal range', () => {
    const rounded = (x: number): number => bfloat16BitsToFloat32(float32ToBfloat16Bits(x));
    const finite = fc.float({ noNaN: true, noDefaultInfinity: true, min: -BFLOAT16_MAX, max: BFLOAT16_MAX });
    fc.assert(
      fc.property(finite, finite, (x, y) => {
        const [lo, hi] = x <= y ? [x, y] : [y, x];
        expect(rounded(lo)).toBeLessThanOrEqual(rounded(hi));
        const bound = Math.abs(x) >= 2 ** -126 ? BFLOAT16_UNIT_ROUNDOFF * Math.abs(x) : 2 ** -134;
        expect(Math.abs(rounded(x) - x)).toBeLessThanOrEqual(bound);
      }),
      { numRuns: 2000 },
    );
  });

  it('writes into a caller-owned output, reads subarray views, and refuses bad arguments', () => {
    const backing = Float32Array.of(5, 1, -3, 5);
    const out = new Uint16Array(2);
    expect(encodeBfloat16(backing.subarray(1, 3), out)).toBe(out);
    expect(Array.from(out)).toEqual([0x3f80, 0xc040]);
    expect(Array.from(backing)).toEqual([5, 1, -3, 5]);
    const decodedOut = new Float32Array(4).subarray(1, 3);
    expect(decodeBfloat16(out, decodedOut)).toBe(decodedOut);
    expect(Array.from(decodedOut)).toEqual([1, -3]);
    expect(() => encodeBfloat16(new Float32Array(2), new Uint16Array(1))).toThrow(
      'encodeBfloat16: out must have length 2 (one element per input), got 1',
    );
    expect(() => decodeBfloat16([1] as unknown as Uint16Array)).toThrow('decodeBfloat16: bits must be a Uint16Array, got Array');
    expect(() => decodeBfloat16(new Uint16Array(1), new Float64Array(1) as unknown as Float32Array)).toThrow(
      'decodeBfloat16: out must be a Float32Array, got Float64Array',
    );
    expect(() => bfloat16BitsToFloat32(-1)).toThrow('bfloat16BitsToFloat32: bits must be an integer in [0, 65535], got -1');
    expect(() => float32ToBfloat16Bits(null as unknown as number)).toThrow('float32ToBfloat16Bits: x must be a number, got object');
  });
});
