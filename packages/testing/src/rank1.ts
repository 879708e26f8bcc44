/**
 * Float64 references for `@mkor/rank1`: row statistics, explicit im2col of an NHWC input, the
 * rank-1 approximation error written out with the full second-moment matrix.
 */
import { type Matrix64, frobeniusNorm, get, matrix, outer } from './float64';

/** The rows of `m` summed and divided by their count: `(1/n) Σᵢ m[i, :]`. */
export function rowMean64(m: Matrix64): Float64Array {
  const mean = new Float64Array(m.cols);
  for (let i = 0; i < m.rows; i++) for (let j = 0; j < m.cols; j++) mean[j] = (mean[j] as number) + get(m, i, j);
  return mean.map((v) => v / m.rows);
}

/** `(1/n) MᵀM` over the n rows of `m`. */
export function secondMoment64(m: Matrix64): Matrix64 {
  const c = matrix(m.cols, m.cols);
  for (let i = 0; i < m.rows; i++) {
    for (let j = 0; j < m.cols; j++) {
      for (let k = 0; k < m.cols; k++) c.data[j * m.cols + k] = (c.data[j * m.cols + k] as number) + get(m, i, j) * get(m, i, k);
    }
  }
  return matrix(m.cols, m.cols, c.data.map((v) => v / m.rows));
}

/** `‖C − c cᵀ‖_F / ‖C‖_F` with `C = (1/n) MᵀM` and `c` the row mean, as the paper defines it. */
export function rank1ApproximationError64(m: Matrix64): number {
  const second = secondMoment64(m);
  const mean = rowMean64(m);
  const meanOuter = outer(mean, mean);
  const difference = matrix(m.cols, m.cols, second.data.map((v, i) => v - (meanOuter.data[i] as number)));
  const denominator = frobeniusNorm(second);
  return denominator === 0 ? 0 : frobeniusNorm(difference) / denominator;
}

/** Geometry of a reference convolution, written out per axis. */
export interface Conv2dReferenceOptions {
  readonly kernelSize: readonly [number, number];
  readonly strides: readonly [number, number];
  readonly dilationRate: readonly [number, number];
  readonly padding: 'valid' | 'same';
}

/**
 * TensorFlow's documented output size and leading padding of one spatial axis:
 * 'same' → `out = ⌈in/s⌉`, total padding `max((out−1)s + (k−1)d + 1 − in, 0)`, the smaller half
 * before; 'valid' → `out = ⌈(in − (k−1)d)/s⌉`, no padding.
 */
function referenceAxis(size: number, k: number, stride: number, dilation: number, padding: 'valid' | 'same'): [number, number] {
  const span = (k - 1) * dilation + 1;
  if (padding === 'valid') return [Math.ceil((size - span + 1) / stride), 0];
  const out = Math.ceil(size / stride);
  return [out, Math.floor(Math.max((out - 1) * stride + span - size, 0) / 2)];
}

/**
 * Explicit im2col of an NHWC input (`data` row-major `[batch, height, width, channels]`): one row
 * per (batch, output row, output column), one column per kernel entry in the order of the kernel
 * reshaped to `[kh·kw·cin, cout]`, zeros where a patch reaches into the padding.
 */
export function im2col64(
  data: ArrayLike<number>,
  shape: readonly [number, number, number, number],
  options: Conv2dReferenceOptions,
): Matrix64 {
  const [batch, height, width, channels] = shape;
  const [kh, kw] = options.kernelSize;
  const [outHeight, padTop] = referenceAxis(height, kh, options.strides[0], options.dilationRate[0], options.padding);
  const [outWidth, padLeft] = referenceAxis(width, kw, options.strides[1], options.dilationRate[1], options.padding);
  const columns = kh * kw * channels;
  const patches = matrix(batch * outHeight * outWidth, columns);
  for (let b = 0; b < batch; b++) {
    for (let p = 0; p < outHeight; p++) {
      for (let q = 0; q < outWidth; q++) {
        const row = (b * outHeight + p) * outWidth + q;
        for (let i = 0; i < kh; i++) {
          for (let j = 0; j < kw; j++) {
            const r = p * options.strides[0] + i * options.dilationRate[0] - padTop;
            const s = q * options.strides[1] + j * options.dilationRate[1] - padLeft;
            if (r < 0 || r >= height || s < 0 || s >= width) continue;
            for (let c = 0; c < channels; c++) {
              patches.data[row * columns + (i * kw + j) * channels + c] = data[((b * height + r) * width + s) * channels + c] as number;
            }
          }
        }
      }
    }
  }
  return patches;
}
