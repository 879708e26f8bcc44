import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';

import { DEBIAN_FASHION_MNIST_DIR, loadFashionMnist } from '@mkor/datasets';
import { describe, expect, it } from 'vitest';

import { TRAINING_FILES, labelledImagesFromBytes } from './data';
import { gunzipIfCompressed, parseIdxBytes } from './idx';

const directory = process.env.MKOR_FASHION_MNIST_DIR ?? DEBIAN_FASHION_MNIST_DIR;
const read = (name: string) => new Uint8Array(readFileSync(join(directory, `${name}.gz`)));

describe('the page reads Fashion-MNIST as @mkor/datasets does in Node', () => {
  it('gives the same first images and labels from the gzipped files', async () => {
    const limit = 300;
    const page = await labelledImagesFromBytes(read(TRAINING_FILES.images), read(TRAINING_FILES.labels), limit);
    const node = loadFashionMnist({ trainLimit: limit, testLimit: 1 }).train;
    expect(page.count).toBe(limit);
    expect(page.images).toEqual(node.images);
    expect(page.labels).toEqual(node.labels);
  });

  it('reads uncompressed files too, and inflates gzip with the platform’s DecompressionStream as zlib does', async () => {
    const compressed = read(TRAINING_FILES.labels);
    const inflated = await gunzipIfCompressed(compressed);
    expect(inflated).toEqual(new Uint8Array(gunzipSync(compressed)));
    expect(await gunzipIfCompressed(inflated)).toBe(inflated);
    expect(parseIdxBytes(inflated, 'labels').dims).toEqual([60000]);
  });
});

describe('bad files are refused with the file named', () => {
  const header = (rank: number, type = 0x08) => [0, 0, type, rank];
  const size = (n: number) => [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];

  it('parses a well-formed two-by-three IDX array', () => {
    const idx = parseIdxBytes(new Uint8Array([...header(2), ...size(2), ...size(3), 1, 2, 3, 4, 5, 6]), 'small');
    expect(idx.dims).toEqual([2, 3]);
    expect(Array.from(idx.data)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it.each([
    ['a bad magic number', [1, 0, 8, 1, ...size(1), 0], /parseIdxBytes: x is not an IDX file/],
    ['another element type', [...header(1, 0x0d), ...size(1), 0, 0, 0, 0], /x holds IDX element type 0xd/],
    ['a truncated header', [...header(3), ...size(2)], /x has a truncated IDX header/],
    ['truncated data', [...header(1), ...size(5), 1, 2], /x is truncated \(2 of 5 data bytes\)/],
  ])('%s', (_, bytes, message) => {
    expect(() => parseIdxBytes(new Uint8Array(bytes), 'x')).toThrow(message);
  });

  it('images that are not 28 × 28, labels that do not match, and a bad limit', async () => {
    const images = new Uint8Array([...header(3), ...size(1), ...size(2), ...size(2), 0, 0, 0, 0]);
    const labels = new Uint8Array([...header(1), ...size(1), 3]);
    await expect(labelledImagesFromBytes(images, labels, 1, { images: 'i', labels: 'l' })).rejects.toThrow(/i holds \[1, 2, 2\], not \[n, 28, 28\]/);
    const good = new Uint8Array([...header(3), ...size(1), ...size(28), ...size(28), ...new Array<number>(784).fill(255)]);
    const twoLabels = new Uint8Array([...header(1), ...size(2), 3, 4]);
    await expect(labelledImagesFromBytes(good, twoLabels, 1, { images: 'i', labels: 'l' })).rejects.toThrow(/l holds \[2\] labels for 1 images/);
    await expect(labelledImagesFromBytes(good, labels, 0)).rejects.toThrow(/limit must be a positive integer, got 0/);
    const one = await labelledImagesFromBytes(good, labels, 5);
    expect(one.count).toBe(1);
    expect(one.images.every((pixel) => pixel === 1)).toBe(true);
    expect(Array.from(one.labels)).toEqual([3]);
  });
});
