import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { checkHeapGemmCall, type HeapGemmCall } from './heap-gemm';
import { loadOpenBlasGemm } from './index';

// A valid call on a 1 KiB heap: A 2×3 at 0, B 3×4 at 64, C 2×4 at 128.
const heap = new ArrayBuffer(1024);
const valid: HeapGemmCall = {
  aOffset: 0,
  bOffset: 64,
  cOffset: 128,
  batch: 1,
  m: 2,
  n: 4,
  k: 3,
  transposeA: false,
  transposeB: false,
  aBatchStride: 6,
  bBatchStride: 12,
  cBatchStride: 8,
};
const check = (change: Partial<Record<keyof HeapGemmCall, unknown>>, on: unknown = heap): void =>
  checkHeapGemmCall('openBlasGemm', on, { ...valid, ...change } as HeapGemmCall);

describe('checkHeapGemmCall', () => {
  it('accepts a valid call on an ArrayBuffer, a SharedArrayBuffer and a WebAssembly.Memory buffer', () => {
    expect(() => check({})).not.toThrow();
    expect(() => check({}, new SharedArrayBuffer(1024))).not.toThrow();
    expect(() => check({}, new WebAssembly.Memory({ initial: 1 }).buffer)).not.toThrow();
    // The last byte of C is the last byte of the heap: still inside.
    expect(() => check({ cOffset: 1024 - 32 })).not.toThrow();
    // Broadcast inputs with several outputs.
    expect(() => check({ batch: 3, aBatchStride: 0, bBatchStride: 0, cOffset: 1024 - 96 })).not.toThrow();
  });

  it('refuses a heap that is not an ArrayBuffer or SharedArrayBuffer', () => {
    expect(() => check({}, new Float32Array(256))).toThrow(
      'openBlasGemm: heap must be an ArrayBuffer or a SharedArrayBuffer, got [object Float32Array]',
    );
    expect(() => check({}, null)).toThrow(/^openBlasGemm: heap must be an ArrayBuffer/);
  });

  it('refuses sizes that are not positive integers below 2^31', () => {
    expect(() => check({ batch: 0 })).toThrow('openBlasGemm: batch must be an integer in [1, ∞), got 0');
    expect(() => check({ m: 1.5 })).toThrow('openBlasGemm: m must be an integer in [1, 2147483647], got 1.5');
    expect(() => check({ n: Number.NaN })).toThrow('openBlasGemm: n must be an integer in [1, 2147483647], got NaN');
    expect(() => check({ k: 2 ** 31 })).toThrow('openBlasGemm: k must be an integer in [1, 2147483647], got 2147483648');
    expect(() => check({ m: '2' })).toThrow('openBlasGemm: m must be an integer in [1, 2147483647], got 2');
  });

  it('refuses transpose flags that are not booleans', () => {
    expect(() => check({ transposeA: 1 })).toThrow('openBlasGemm: transposeA must be a boolean, got 1');
    expect(() => check({ transposeB: undefined })).toThrow('openBlasGemm: transposeB must be a boolean, got undefined');
  });

  it('refuses offsets that are negative, fractional or not multiples of 4 bytes, and negative strides', () => {
    expect(() => check({ aOffset: -4 })).toThrow('openBlasGemm: aOffset must be an integer in [0, ∞), got -4');
    expect(() => check({ bOffset: 66 })).toThrow('openBlasGemm: bOffset must be a multiple of 4 bytes (float32), got 66');
    expect(() => check({ cOffset: 128.5 })).toThrow('openBlasGemm: cOffset must be an integer in [0, ∞), got 128.5');
    expect(() => check({ aBatchStride: -1 })).toThrow('openBlasGemm: aBatchStride must be an integer in [0, ∞), got -1');
  });

  it('refuses any operand whose batch reaches past the heap', () => {
    expect(() => check({ cOffset: 1024 - 28 })).toThrow(
      "openBlasGemm: C (cOffset 996, batch 1, cBatchStride 8, 8 elements each) ends at byte 1028, past the heap's 1024 bytes",
    );
    expect(() => check({ batch: 40, bBatchStride: 12, cOffset: 128, cBatchStride: 8, aBatchStride: 0 })).toThrow(
      /^openBlasGemm: B \(bOffset 64, batch 40, bBatchStride 12, 12 elements each\) ends at byte 1984, past the heap's 1024 bytes/,
    );
    expect(() => check({ aOffset: 1 << 20 })).toThrow(/^openBlasGemm: A \(aOffset 1048576, .*past the heap's 1024 bytes/);
    // A detached or empty heap holds nothing.
    expect(() => check({}, new ArrayBuffer(0))).toThrow(/^openBlasGemm: A .* past the heap's 0 bytes/);
  });

  it('refuses outputs that overlap each other or an input', () => {
    expect(() => check({ batch: 2, aBatchStride: 0, bBatchStride: 0, cBatchStride: 4 })).toThrow(
      'openBlasGemm: cBatchStride must be at least m·n = 8 so the outputs do not overlap, got 4',
    );
    expect(() => check({ cOffset: 16 })).toThrow('openBlasGemm: C (bytes 16–48) overlaps A; the output must not alias an input');
    expect(() => check({ cOffset: 96 })).toThrow('openBlasGemm: C (bytes 96–128) overlaps B; the output must not alias an input');
  });
});

describe('loadOpenBlasGemm without a usable addon', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'mkor-openblas-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('returns the reason and how to build it when the addon was not built', () => {
    const path = join(scratch, 'missing', 'mkor_openblas.node');
    const load = loadOpenBlasGemm(path);
    expect(load.gemm).toBeNull();
    expect('reason' in load && load.reason).toBe(
      `@mkor/openblas: the native gemm is not built (${path} does not exist); build it with ` +
        '`npm run build:native -w @mkor/openblas` (needs OpenBLAS and a C compiler: ' +
        'Debian/Ubuntu `apt-get install libopenblas-dev build-essential`)',
    );
  });

  it('returns the loader error when the file is not a native module, and never throws', () => {
    const path = join(scratch, 'broken.node');
    writeFileSync(path, 'not a shared object');
    const load = loadOpenBlasGemm(path);
    expect(load.gemm).toBeNull();
    expect('reason' in load && load.reason).toMatch(
      /^@mkor\/openblas: the native gemm .*broken\.node could not be loaded \(.+\); build it with `npm run build:native -w @mkor\/openblas`/,
    );
  });
});
