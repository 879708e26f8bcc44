import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import * as tf from '@tensorflow/tfjs-core';

import { parseIdx } from './idx';

/** Where Debian's `dataset-fashion-mnist` package puts the IDX files. */
export const DEBIAN_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

/** The ten Fashion-MNIST classes, by label. */
export const FASHION_MNIST_CLASSES = [
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
  'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
] as const;

/** One split of Fashion-MNIST in host memory. */
export interface ImageSplit {
  /** `count × 28 × 28` pixels scaled to [0, 1]. */
  readonly images: Float32Array;
  /** `count` labels in 0…9. */
  readonly labels: Uint8Array;
  readonly count: number;
}

/** Options for {@link loadFashionMnist}. */
export interface FashionMnistOptions {
  /** Folder holding the four IDX files; default `$MKOR_FASHION_MNIST_DIR` or Debian's folder. */
  readonly dir?: string;
  /** Keep only the first `trainLimit` training images (default: all 60,000). */
  readonly trainLimit?: number;
  /** Keep only the first `testLimit` test images (default: all 10,000). */
  readonly testLimit?: number;
}

const FILES = {
  trainImages: 'train-images-idx3-ubyte',
  trainLabels: 'train-labels-idx1-ubyte',
  testImages: 't10k-images-idx3-ubyte',
  testLabels: 't10k-labels-idx1-ubyte',
} as const;

function locate(dir: string, base: string): string {
  for (const candidate of [join(dir, `${base}.gz`), join(dir, base)]) {
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(
    `Fashion-MNIST is missing: no ${base}(.gz) in ${dir}. ` +
      'On Debian/Ubuntu install it with `sudo apt-get install dataset-fashion-mnist` ' +
      `(files go to ${DEBIAN_FASHION_MNIST_DIR}), or set MKOR_FASHION_MNIST_DIR to a folder ` +
      'holding train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and ' +
      't10k-labels-idx1-ubyte (gzipped or not).',
  );
}

function readSplit(dir: string, imagesBase: string, labelsBase: string, limit: number | undefined): ImageSplit {
  const imagesPath = locate(dir, imagesBase);
  const labelsPath = locate(dir, labelsBase);
  const images = parseIdx(readFileSync(imagesPath), imagesPath);
  const labels = parseIdx(readFileSync(labelsPath), labelsPath);
  const [available, rows, cols] = images.dims as [number, number, number];
  if (images.dims.length !== 3 || rows !== 28 || cols !== 28) {
    throw new Error(`${imagesPath}: expected [n, 28, 28] images, got [${images.dims.join(', ')}]`);
  }
  if (labels.dims.length !== 1 || labels.dims[0] !== available) {
    throw new Error(`${labelsPath}: expected ${available} labels, got [${labels.dims.join(', ')}]`);
  }
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) {
    throw new RangeError(`loadFashionMnist: limits must be positive integers, got ${limit}`);
  }
  const count = Math.min(limit ?? available, available);
  const pixels = new Float32Array(count * 784);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (images.data[i] as number) / 255;
  return { images: pixels, labels: labels.data.slice(0, count), count };
}

/**
 * Loads Fashion-MNIST (Xiao et al. 2017) from IDX files: 60,000 training and 10,000 test
 * grayscale 28×28 images of clothing in 10 classes. Fails with a message that says how to
 * install the data when the files are missing.
 */
export function loadFashionMnist(options: FashionMnistOptions = {}): { train: ImageSplit; test: ImageSplit } {
  const dir = options.dir ?? process.env.MKOR_FASHION_MNIST_DIR ?? DEBIAN_FASHION_MNIST_DIR;
  return {
    train: readSplit(dir, FILES.trainImages, FILES.trainLabels, options.trainLimit),
    test: readSplit(dir, FILES.testImages, FILES.testLabels, options.testLimit),
  };
}

/**
 * A split as tensors: images `[count, 28, 28, 1]` (or `[count, 784]` when `flatten`) and one-hot
 * labels `[count, 10]`. The caller owns (and disposes) both.
 */
export function splitToTensors(split: ImageSplit, options: { flatten?: boolean } = {}): { x: tf.Tensor; y: tf.Tensor2D } {
  const x = options.flatten
    ? tf.tensor2d(split.images, [split.count, 784])
    : tf.tensor4d(split.images, [split.count, 28, 28, 1]);
  const y = tf.tidy(() => tf.cast(tf.oneHot(tf.tensor1d(split.labels, 'int32'), 10), 'float32') as tf.Tensor2D);
  return { x, y };
}
