import { checkNumber } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';

import { checkFloat32Buffer, finishReduction, resolveCollectiveOptions } from './reduce';
import { DEFAULT_BUCKET_BYTES, TransportError } from './transport';
import type { CollectiveOptions, Transport } from './transport';


/**
 * Numbers that lead the first bucket of every {@link bucketedAllReduce}: 16 four-bit pieces of a
 * 64-bit hash of the layout, then their squares.
 */
export const LAYOUT_CHECK_ELEMENTS = 32;

/** Options of {@link bucketedAllReduce} and {@link allReduceTensors}. */
export interface BucketOptions extends CollectiveOptions {
  /**
   * The most bytes one message carries, counted at 4 bytes per element whatever the wire
   * precision (a multiple of 4, at least 256). Default {@link DEFAULT_BUCKET_BYTES}.
   */
  readonly bucketBytes?: number;
}

/** Where each vector sits in the concatenated stream, and how the stream is cut into buckets. */
export interface BucketPlan {
  /** The names, sorted by UTF-16 code units (the same order on every rank, whatever the locale). */
  readonly names: readonly string[];
  /** Offset of each name's vector in the stream (after the {@link LAYOUT_CHECK_ELEMENTS} numbers). */
  readonly offsets: ReadonlyMap<string, number>;
  /** Elements in the stream: the layout check plus every vector. */
  readonly totalLength: number;
  /** `[start, end)` of each bucket in the stream; every bucket holds at most `bucketBytes / 4` elements. */
  readonly buckets: readonly (readonly [number, number])[];
}

/**
 * Ranks passed {@link bucketedAllReduce} different layouts (names or lengths). Raised on every
 * rank, with no data exchanged beyond the first bucket, so the group stays usable.
 */
export class BucketLayoutMismatchError extends TransportError {
  override readonly name = 'BucketLayoutMismatchError';
}

/** Sorts names by UTF-16 code units (unlike `localeCompare`, the same on every machine). */
function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Lays out named vectors of the given lengths for {@link bucketedAllReduce}: sorted names,
 * concatenated after the layout check, cut into buckets of at most `bucketBytes / 4` elements (a
 * long vector spans several buckets). Deterministic: equal layouts give equal plans on every rank.
 */
export function planBuckets(lengths: Readonly<Record<string, number>>, bucketBytes: number = DEFAULT_BUCKET_BYTES): BucketPlan {
  checkBucketBytes('planBuckets', bucketBytes);
  const names = Object.keys(lengths).sort(byCodeUnits);
  const offsets = new Map<string, number>();
  let totalLength = LAYOUT_CHECK_ELEMENTS;
  for (const name of names) {
    offsets.set(name, totalLength);
    totalLength += checkNumber('planBuckets', `length of '${name}'`, lengths[name], { min: 0, integer: true });
  }
  const bucketElements = bucketBytes / 4;
  const buckets: [number, number][] = [];
  for (let start = 0; start < totalLength; start += bucketElements) {
    buckets.push([start, Math.min(totalLength, start + bucketElements)]);
  }
  return { names, offsets, totalLength, buckets };
}

function checkBucketBytes(where: string, bucketBytes: unknown): number {
  const value = checkNumber(where, 'bucketBytes', bucketBytes, { min: 4 * 2 * LAYOUT_CHECK_ELEMENTS, integer: true });
  if (value % 4 !== 0) throw new RangeError(`${where}: bucketBytes must be a multiple of 4, got ${value}`);
  return value;
}

/** FNV-1a over the UTF-16 code units of `text`, as an unsigned 32-bit integer. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}

/**
 * The layout check of a plan: 16 four-bit pieces `f` of a 64-bit hash of the names and lengths,
 * then `f²`. Summed over n ranks, `Σf = n·f` and `Σf² = n·f²` hold for this rank's `f` exactly when
 * every rank has the same `f` (their variance is 0), so every rank reaches the same verdict. The
 * numbers are integers ≤ 225: exact in float16 and float32, and their sums exact for n < 2¹⁶.
 */
function layoutCheck(plan: BucketPlan, lengthOf: (name: string) => number): Float32Array {
  const canonical = JSON.stringify(plan.names.map((name) => [name, lengthOf(name)]));
  const hashes = [fnv1a(canonical), fnv1a([...canonical].reverse().join(''))];
  const pieces = hashes.flatMap((hash) => Array.from({ length: 8 }, (_, k) => (hash >>> (4 * k)) & 15));
  return Float32Array.from([...pieces, ...pieces.map((piece) => piece * piece)]);
}

/**
 * All-reduces one step's named vectors in few messages: sorts the names, packs the vectors into
 * buckets of at most `bucketBytes` ({@link planBuckets}), all-reduces the buckets (the first alone,
 * carrying a check that every rank sent the same names and lengths, then the rest together) and
 * unpacks. Resolves with a new record of new arrays under the same names; the inputs are not
 * modified.
 *
 * Every rank must call it at the same point of its sequence of collectives. A layout that differs
 * across ranks rejects with {@link BucketLayoutMismatchError} on every rank (or, when it changes
 * the first bucket's length, with the transport's `TransportMismatchError`), never with silently
 * misaligned data. For MKOR's synchronise step pass `{ op: 'mean' }`, optionally
 * `precision: 'float16'`: the buckets travel as sums and are divided by the world size here, in
 * float32, as the transports do.
 */
export async function bucketedAllReduce(
  transport: Transport,
  vectors: Readonly<Record<string, Float32Array>>,
  options: BucketOptions = {},
): Promise<Record<string, Float32Array>> {
  const where = 'bucketedAllReduce';
  if (vectors === null || typeof vectors !== 'object') {
    throw new TypeError(`${where}: vectors must be a record of Float32Array, got ${String(vectors)}`);
  }
  const { op, precision, timeoutMs } = resolveCollectiveOptions(where, options, Number.POSITIVE_INFINITY);
  const bucketBytes = checkBucketBytes(where, options.bucketBytes ?? DEFAULT_BUCKET_BYTES);
  const lengths: Record<string, number> = {};
  for (const [name, vector] of Object.entries(vectors)) {
    lengths[name] = checkFloat32Buffer(where, `vectors['${name}']`, vector).length;
  }
  const plan = planBuckets(lengths, bucketBytes);
  const stream = new Float32Array(plan.totalLength);
  const check = layoutCheck(plan, (name) => lengths[name] as number);
  stream.set(check);
  for (const name of plan.names) stream.set(vectors[name] as Float32Array, plan.offsets.get(name));

  const collective = { op: 'sum' as const, precision, ...(options.timeoutMs === undefined ? {} : { timeoutMs }) };
  const [firstBucket, ...otherBuckets] = plan.buckets.map(([start, end]) => stream.subarray(start, end));
  const firstSum = await transport.allReduce(firstBucket as Float32Array, collective);
  const n = transport.worldSize;
  for (let i = 0; i < LAYOUT_CHECK_ELEMENTS; i++) {
    if (firstSum[i] !== n * (check[i] as number)) {
      const sent = plan.names.map((name) => `${name}[${lengths[name]}]`).join(', ');
      throw new BucketLayoutMismatchError(
        `${where}: ranks sent different layouts (names or lengths); rank ${transport.rank} sent ${plan.names.length} vector(s): ${sent}`,
      );
    }
  }
  const otherSums = await Promise.all(otherBuckets.map((bucket) => transport.allReduce(bucket, collective)));
  const reduced = new Float32Array(plan.totalLength);
  [firstSum, ...otherSums].forEach((sum, index) => reduced.set(sum, (plan.buckets[index] as readonly [number, number])[0]));
  finishReduction(reduced, op, n);
  const result: Record<string, Float32Array> = {};
  for (const name of plan.names) {
    const offset = plan.offsets.get(name) as number;
    result[name] = reduced.slice(offset, offset + (lengths[name] as number));
  }
  return result;
}

/**
 * {@link bucketedAllReduce} for float32 tensors: reads them (`tensor.data()`), all-reduces them
 * in buckets and resolves with NEW tensors of the same shapes (the caller disposes them); the
 * inputs are neither modified nor disposed. Asynchronous, so call it outside `tf.tidy`.
 */
export async function allReduceTensors(
  transport: Transport,
  tensors: Readonly<Record<string, tf.Tensor>>,
  options: BucketOptions = {},
): Promise<Record<string, tf.Tensor>> {
  const where = 'allReduceTensors';
  if (tensors === null || typeof tensors !== 'object') {
    throw new TypeError(`${where}: tensors must be a record of tf.Tensor, got ${String(tensors)}`);
  }
  const entries = Object.entries(tensors);
  for (const [name, tensor] of entries) {
    if (!(tensor instanceof tf.Tensor)) throw new TypeError(`${where}: tensors['${name}'] must be a tf.Tensor`);
    if (tensor.isDisposed) throw new TypeError(`${where}: tensors['${name}'] has been disposed`);
    if (tensor.dtype !== 'float32') {
      throw new TypeError(`${where}: tensors['${name}'] must have dtype float32, got ${tensor.dtype}`);
    }
  }
  const values = await Promise.all(entries.map(([, tensor]) => tensor.data<'float32'>()));
  const vectors: Record<string, Float32Array> = {};
  entries.forEach(([name], index) => {
    vectors[name] = values[index] as Float32Array;
  });
  const reduced = await bucketedAllReduce(transport, vectors, options);
  const result: Record<string, tf.Tensor> = {};
  for (const [name, tensor] of entries) result[name] = tf.tensor(reduced[name] as Float32Array, tensor.shape, 'float32');
  return result;
}
