/** The validation every call of a heap matrix product passes before it reaches native code. */
import { types } from 'node:util';

import { type HeapGemm, type HeapGemmCall, checkNumber } from '@mkor/core';

export type { HeapGemm, HeapGemmCall };

/** The byte range [start, end) an operand's whole batch touches. */
interface Span {
  readonly start: number;
  readonly end: number;
}

const LARGEST_DIMENSION = 2 ** 31 - 1; // cblas takes 32-bit ints

function operandSpan(where: string, heap: ArrayBufferLike, call: HeapGemmCall, operand: 'a' | 'b' | 'c', elements: number): Span {
  const offsetName = `${operand}Offset` as const;
  const strideName = `${operand}BatchStride` as const;
  const offset = checkNumber(where, offsetName, call[offsetName], { min: 0, integer: true });
  if (offset % 4 !== 0) throw new RangeError(`${where}: ${offsetName} must be a multiple of 4 bytes (float32), got ${offset}`);
  const stride = checkNumber(where, strideName, call[strideName], { min: 0, integer: true });
  const end = offset + ((call.batch - 1) * stride + elements) * 4;
  if (end > heap.byteLength) {
    throw new RangeError(
      `${where}: ${operand.toUpperCase()} (${offsetName} ${offset}, batch ${call.batch}, ${strideName} ${stride}, ` +
        `${elements} elements each) ends at byte ${end}, past the heap's ${heap.byteLength} bytes`,
    );
  }
  return { start: offset, end };
}

function overlaps(x: Span, y: Span): boolean {
  return x.start < y.end && y.start < x.end;
}

/**
 * Checks one {@link HeapGemm} call: `heap` an ArrayBuffer or SharedArrayBuffer; `batch`, `m`,
 * `n`, `k` positive integers (dimensions below 2³¹); offsets non-negative multiples of 4; strides
 * non-negative integers; every operand's whole batch inside the heap; C's matrices apart from each
 * other and from A's and B's. Throws an error naming `where` and the parameter otherwise.
 */
export function checkHeapGemmCall(where: string, heap: unknown, call: HeapGemmCall): asserts heap is ArrayBufferLike {
  if (!types.isArrayBuffer(heap) && !types.isSharedArrayBuffer(heap)) {
    throw new TypeError(`${where}: heap must be an ArrayBuffer or a SharedArrayBuffer, got ${Object.prototype.toString.call(heap)}`);
  }
  if (typeof call !== 'object' || call === null) throw new TypeError(`${where}: call must be an object, got ${String(call)}`);
  checkNumber(where, 'batch', call.batch, { min: 1, integer: true });
  for (const name of ['m', 'n', 'k'] as const) checkNumber(where, name, call[name], { min: 1, max: LARGEST_DIMENSION, integer: true });
  for (const name of ['transposeA', 'transposeB'] as const) {
    if (typeof call[name] !== 'boolean') throw new TypeError(`${where}: ${name} must be a boolean, got ${String(call[name])}`);
  }
  const { m, n, k } = call;
  const a = operandSpan(where, heap, call, 'a', m * k);
  const b = operandSpan(where, heap, call, 'b', k * n);
  const c = operandSpan(where, heap, call, 'c', m * n);
  if (call.batch > 1 && call.cBatchStride < m * n) {
    throw new RangeError(`${where}: cBatchStride must be at least m·n = ${m * n} so the outputs do not overlap, got ${call.cBatchStride}`);
  }
  if (overlaps(c, a) || overlaps(c, b)) {
    const other = overlaps(c, a) ? 'A' : 'B';
    throw new RangeError(`${where}: C (bytes ${c.start}–${c.end}) overlaps ${other}; the output must not alias an input`);
  }
}
