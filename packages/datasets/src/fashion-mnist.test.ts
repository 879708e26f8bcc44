import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { loadFashionMnist, splitToTensors } from './fashion-mnist';
import { parseIdx } from './idx';

/** Builds an IDX file of unsigned bytes by hand, independently of the parser. */
function idx(dims: number[], data: number[]): Uint8Array {
  const header = [0, 0, 8, dims.length];
  for (const d of dims) header.push((d >>> 24) & 255, (d >>> 16) & 255, (d >>> 8) & 255, d & 255);
  return Uint8Array.from([...header, ...data]);
}

function fakeDataset(count: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'fmnist-'));
  const pixels = Array.from({ length: count * 784 }, (_, i) => i % 256);
  const labels = Array.from({ length: count }, (_, i) => i % 10);
  for (const split of ['train', 't10k']) {
    writeFileSync(join(dir, `${split}-images-idx3-ubyte.gz`), gzipSync(idx([count, 28, 28], pixels)));
    writeFileSync(join(dir, `${split}-labels-idx1-ubyte`), idx([count], labels));
  }
  return dir;
}

describe('parseIdx', () => {
  it('reads dimensions and bytes, gzipped or not', () => {
    const file = idx([2, 3], [1, 2, 3, 4, 5, 6]);
    for (const bytes of [file, new Uint8Array(gzipSync(file))]) {
      const parsed = parseIdx(bytes);
      expect(parsed.dims).toEqual([2, 3]);
      expect(Array.from(parsed.data)).toEqual([1, 2, 3, 4, 5, 6]);
    }
  });

  it('refuses other element types and truncated files', () => {
    expect(() => parseIdx(Uint8Array.from([0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]))).toThrow(/not unsigned byte/);
    expect(() => parseIdx(idx([4], [1, 2]))).toThrow(/truncated IDX data/);
    expect(() => parseIdx(Uint8Array.from([1, 2, 3, 4]))).toThrow(/bad magic/);
  });
});

describe('loadFashionMnist', () => {
  it('loads a folder of IDX files, scales pixels to [0, 1] and honours limits', () => {
    const data = loadFashionMnist({ dir: fakeDataset(5), trainLimit: 3 });
    expect(data.train.count).toBe(3);
    expect(data.test.count).toBe(5);
    expect(data.train.images[255]).toBe(1);
    expect(data.train.images[1]).toBeCloseTo(1 / 255, 7);
    expect(Array.from(data.train.labels)).toEqual([0, 1, 2]);
  });

  it('says how to install the data when it is missing', () => {
    expect(() => loadFashionMnist({ dir: '/nonexistent' })).toThrow(/apt-get install dataset-fashion-mnist/);
  });

  it('makes tensors without leaking', () => {
    const data = loadFashionMnist({ dir: fakeDataset(4) });
    const before = tf.memory().numTensors;
    const { x, y } = splitToTensors(data.train, { flatten: true });
    expect(x.shape).toEqual([4, 784]);
    const labels = tf.argMax(y, 1);
    expect(Array.from(labels.dataSync())).toEqual([0, 1, 2, 3]);
    tf.dispose([x, y, labels]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('reads the real Debian files when installed', () => {
    const data = loadFashionMnist({ trainLimit: 100, testLimit: 100 });
    expect(data.train.count).toBe(100);
    expect(new Set(data.train.labels).size).toBe(10);
  });
});
