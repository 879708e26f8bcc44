/**
 * Shared plumbing of the half-precision codecs: reinterpreting one float32 as its bits and back
 * through a scratch buffer, and the argument checks of the array codecs.
 */

const scratchFloat = new Float32Array(1);
const scratchBits = new Uint32Array(scratchFloat.buffer);

/** The IEEE bits of `x` rounded to float32, as an unsigned 32-bit integer. */
export function float32Bits(x: number): number {
  scratchFloat[0] = x;
  return scratchBits[0] as number;
}

/** The float32 whose IEEE bits are `bits` (an unsigned 32-bit integer), as a number. */
export function float32FromBits(bits: number): number {
  scratchBits[0] = bits;
  return scratchFloat[0] as number;
}

type TypedArrayConstructor = Float32ArrayConstructor | Uint16ArrayConstructor;

/** Throws a `TypeError` naming `where` unless `value` is an instance of `kind`. */
export function checkTypedArray(where: string, name: string, value: unknown, kind: TypedArrayConstructor): void {
  if (!(value instanceof kind)) {
    const got =
      typeof value === 'object' && value !== null ? Object.prototype.toString.call(value).slice(8, -1) : String(value);
    throw new TypeError(`${where}: ${name} must be a ${kind.name}, got ${got}`);
  }
}

/** Throws a `RangeError` naming `where` unless `out` has `length` elements. */
export function checkSameLength(where: string, out: ArrayLike<number>, length: number): void {
  if (out.length !== length) {
    throw new RangeError(`${where}: out must have length ${length} (one element per input), got ${out.length}`);
  }
}
