import { checkNumber, checkOneOf } from '@mkor/core';
import { decodeFloat16, encodeFloat16 } from '@mkor/fp16';

import { REDUCE_OPS, WIRE_PRECISIONS } from './transport';
import type { CollectiveOptions, ReduceOp, TimeoutOptions, WirePrecision } from './transport';

/** {@link CollectiveOptions} with every default filled in. */
export interface ResolvedCollectiveOptions {
  readonly op: ReduceOp;
  readonly precision: WirePrecision;
  readonly timeoutMs: number;
}

/**
 * Checks a timeout in milliseconds: a number > 0, `Infinity` allowed (wait forever).
 * Throws a `RangeError` starting with `where` otherwise.
 */
export function checkTimeout(where: string, value: unknown): number {
  if (value === Number.POSITIVE_INFINITY) return value;
  return checkNumber(where, 'timeoutMs', value, { min: 0, minExclusive: true });
}

/**
 * Validates and completes the options of an `allReduce` call (op `'sum'`, precision `'float32'`,
 * the transport's `defaultTimeoutMs`). For transport implementers.
 */
export function resolveCollectiveOptions(
  where: string,
  options: CollectiveOptions | undefined,
  defaultTimeoutMs: number,
): ResolvedCollectiveOptions {
  return {
    op: checkOneOf(where, 'op', options?.op ?? 'sum', REDUCE_OPS),
    precision: checkOneOf(where, 'precision', options?.precision ?? 'float32', WIRE_PRECISIONS),
    timeoutMs: checkTimeout(where, options?.timeoutMs ?? defaultTimeoutMs),
  };
}

/** Validates and completes `{ timeoutMs }` options (broadcast, barrier). For transport implementers. */
export function resolveTimeout(where: string, options: TimeoutOptions | undefined, defaultTimeoutMs: number): number {
  return checkTimeout(where, options?.timeoutMs ?? defaultTimeoutMs);
}

/** Throws a `TypeError` starting with `where` unless `buffer` is a `Float32Array`. */
export function checkFloat32Buffer(where: string, name: string, buffer: unknown): Float32Array {
  if (!(buffer instanceof Float32Array)) {
    const got = buffer === null ? 'null' : typeof buffer === 'object' ? buffer.constructor.name : typeof buffer;
    throw new TypeError(`${where}: ${name} must be a Float32Array, got ${got}`);
  }
  return buffer;
}

/** Throws a `RangeError` starting with `where` unless `root` is an integer rank in `[0, worldSize)`. */
export function checkRoot(where: string, root: unknown, worldSize: number): number {
  return checkNumber(where, 'root', root, { min: 0, max: worldSize - 1, integer: true });
}

/**
 * What one rank's contribution becomes on the wire: a copy of `values`, or for `'float16'` each
 * value rounded to the nearest float16 (ties to even) and decoded back to float32, exactly.
 */
export function wireValues(values: Float32Array, precision: WirePrecision): Float32Array {
  return precision === 'float16' ? decodeFloat16(encodeFloat16(values)) : Float32Array.from(values);
}

/**
 * Adds `addend` into `sum` element-wise in float32 arithmetic (each addition rounded to float32,
 * as the typed array stores it).
 */
export function accumulateInto(sum: Float32Array, addend: Float32Array): void {
  for (let i = 0; i < sum.length; i++) sum[i] = (sum[i] as number) + (addend[i] as number);
}

/** Divides `sum` by `worldSize` in place when `op` is `'mean'` (one correctly rounded float32 division). */
export function finishReduction(sum: Float32Array, op: ReduceOp, worldSize: number): Float32Array {
  if (op === 'mean') {
    for (let i = 0; i < sum.length; i++) sum[i] = (sum[i] as number) / worldSize;
  }
  return sum;
}

/**
 * The reference semantics of an all-reduce over `contributions` (one per rank, in rank order, all
 * the same length): each rounded for the wire ({@link wireValues}), summed in rank order in
 * float32, then divided by the number of ranks for `'mean'`. Returns a new array; the inputs are
 * not modified. Every transport in this package computes exactly this, so results are
 * bit-identical across ranks and transports.
 */
export function reduceContributions(
  contributions: readonly Float32Array[],
  op: ReduceOp,
  precision: WirePrecision,
): Float32Array {
  const [first, ...rest] = contributions;
  if (first === undefined) throw new RangeError('reduceContributions: contributions must not be empty');
  const sum = wireValues(first, precision);
  for (const contribution of rest) {
    if (contribution.length !== sum.length) {
      throw new RangeError(
        `reduceContributions: contributions must have equal lengths, got ${sum.length} and ${contribution.length}`,
      );
    }
    accumulateInto(sum, precision === 'float16' ? wireValues(contribution, precision) : contribution);
  }
  return finishReduction(sum, op, contributions.length);
}
