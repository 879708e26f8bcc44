/**
 * Float64 references for binary floating-point formats narrower than float64 (float16, bfloat16,
 * float32): the value of a bit pattern, the bit pattern of a value, and rounding to nearest with
 * ties to even — written from the IEEE 754 definitions, with no bit tricks, for the @mkor/fp16
 * codecs to be checked against.
 */

/** A binary interchange format: 1 sign bit, `exponentBits` biased exponent bits, `fractionBits` fraction bits. */
export interface BinaryFormat64 {
  readonly exponentBits: number;
  readonly fractionBits: number;
}

/** IEEE 754 binary16. */
export const FLOAT16_FORMAT64: BinaryFormat64 = { exponentBits: 5, fractionBits: 10 };
/** bfloat16: the upper half of a float32. */
export const BFLOAT16_FORMAT64: BinaryFormat64 = { exponentBits: 8, fractionBits: 7 };

/** The exponent bias `2^(exponentBits−1) − 1`, which is also the largest exponent of a finite value. */
function bias(format: BinaryFormat64): number {
  return 2 ** (format.exponentBits - 1) - 1;
}

/** `⌊log2 a⌋` for a positive finite a, exactly. */
function floorLog2(a: number): number {
  let e = Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  return e;
}

/** The largest finite value of `format`, `(2 − 2^−fractionBits)·2^bias`. */
export function largestFinite64(format: BinaryFormat64): number {
  return (2 - 2 ** -format.fractionBits) * 2 ** bias(format);
}

/** The value of a bit pattern of `format` (NaN for every NaN pattern). */
export function formatValue64(bits: number, format: BinaryFormat64): number {
  const { exponentBits, fractionBits } = format;
  const sign = Math.floor(bits / 2 ** (exponentBits + fractionBits)) === 1 ? -1 : 1;
  const biasedExponent = Math.floor(bits / 2 ** fractionBits) % 2 ** exponentBits;
  const fraction = bits % 2 ** fractionBits;
  if (biasedExponent === 2 ** exponentBits - 1) return fraction === 0 ? sign * Infinity : Number.NaN;
  if (biasedExponent === 0) return sign * fraction * 2 ** (1 - bias(format) - fractionBits);
  return sign * (1 + fraction / 2 ** fractionBits) * 2 ** (biasedExponent - bias(format));
}

/**
 * The bit pattern of a value representable in `format` (±0, ±Inf, subnormal or normal; not NaN).
 * Throws a `RangeError` when the value is not representable.
 */
export function formatBits64(value: number, format: BinaryFormat64): number {
  const { exponentBits, fractionBits } = format;
  if (Number.isNaN(value)) throw new RangeError('formatBits64: NaN has many bit patterns');
  const signBit = value < 0 || Object.is(value, -0) ? 2 ** (exponentBits + fractionBits) : 0;
  const a = Math.abs(value);
  const minNormalExponent = 1 - bias(format);
  let biasedExponent: number;
  let fraction: number;
  if (a === Infinity) {
    biasedExponent = 2 ** exponentBits - 1;
    fraction = 0;
  } else if (a < 2 ** minNormalExponent) {
    biasedExponent = 0;
    fraction = a / 2 ** (minNormalExponent - fractionBits);
  } else {
    const exponent = floorLog2(a);
    biasedExponent = exponent + bias(format);
    fraction = (a / 2 ** exponent - 1) * 2 ** fractionBits;
  }
  if (!Number.isInteger(fraction) || biasedExponent >= 2 ** exponentBits) {
    throw new RangeError(`formatBits64: ${value} is not representable`);
  }
  return signBit + biasedExponent * 2 ** fractionBits + fraction;
}

/**
 * Rounds x to the nearest value of `format`, ties to the value with an even last fraction bit,
 * as IEEE 754 defines it: round as if the exponent range were unbounded above, and return ±Inf
 * when the result exceeds the largest finite value. The sign of zero is kept; NaN stays NaN.
 * Exact for every float64 x (scaling by powers of two and splitting off the integer part are exact).
 */
export function roundToFormat64(x: number, format: BinaryFormat64): number {
  if (Number.isNaN(x) || x === 0 || !Number.isFinite(x)) return x;
  const a = Math.abs(x);
  const exponent = Math.max(floorLog2(a), 1 - bias(format));
  const quantum = 2 ** (exponent - format.fractionBits);
  const scaled = a / quantum;
  const lower = Math.floor(scaled);
  const rest = scaled - lower;
  const units = rest > 0.5 || (rest === 0.5 && lower % 2 === 1) ? lower + 1 : lower;
  const rounded = units * quantum;
  const magnitude = rounded > largestFinite64(format) ? Infinity : rounded;
  return x < 0 ? -magnitude : magnitude;
}
