import { checkNumber, checkOneOf, checkSpatialPair } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';

import { checkRows, finishStatistic, resolveRank1Options } from './rank1';

/** A size per spatial axis, `[height, width]`, or one number for both (as Keras layers accept). */
export type SpatialPair = number | readonly [number, number];

/** Options of {@link conv2dInputVector}: the layer's geometry and the rank-1 options. */
export interface Conv2dInputOptions {
  /** `[kh, kw]`, the kernel's spatial size. */
  kernelSize: SpatialPair;
  /** `[sh, sw]` (default `[1, 1]`). */
  strides?: SpatialPair;
  /** `'valid'` (default) or `'same'`, with tfjs's arithmetic (see {@link conv2dGeometry}). */
  padding?: 'valid' | 'same';
  /** `[dh, dw]` (default `[1, 1]`). */
  dilationRate?: SpatialPair;
  /** Append a constant 1 (the folded bias), default false. */
  appendOne?: boolean;
  /** Clamp the mean to `±clamp` before the 1 is appended; a positive finite number. */
  clamp?: number;
}

/** Options of {@link conv2dOutputGradVector}. */
export interface Conv2dOutputGradOptions {
  /** `'mean'` (default) or `'sum'`: `n · mean` with `n = batch · outHeight · outWidth`. */
  scale?: 'mean' | 'sum';
  /** Clamp to `±clamp`; a positive finite number. */
  clamp?: number;
}

/** Where a conv2d layer's kernel visits its input; see {@link conv2dGeometry}. */
export interface Conv2dGeometry {
  readonly kernelSize: readonly [number, number];
  readonly strides: readonly [number, number];
  readonly dilationRate: readonly [number, number];
  /** Output spatial size. */
  readonly outHeight: number;
  readonly outWidth: number;
  /** Zero rows above and columns left of the input ('same' padding; 0 for 'valid'). */
  readonly padTop: number;
  readonly padLeft: number;
}

/** The axes of a channels-last image batch, tfjs's default layout. */
const NHWC = ['batch', 'height', 'width', 'channels'] as const;

/**
 * The geometry of a 2-D convolution over an input of spatial size `height × width`, with
 * tfjs's arithmetic (`conv_util.computeConv2DInfo`). With the effective kernel size
 * `k' = (k − 1)·dilation + 1`:
 *
 * - `'valid'`: `out = ⌈(in − k' + 1) / stride⌉`, no padding;
 * - `'same'`: `out = ⌈in / stride⌉`, `pad = max(0, (out − 1)·stride + k' − in)` zeros in total,
 *   `⌊pad / 2⌋` before (top, left) and the rest after.
 *
 * Output position `o` of kernel offset `i` reads input row `i·dilation + o·stride − padTop`
 * (a padding zero when outside the input). Throws when the kernel does not fit ('valid').
 */
export function conv2dGeometry(
  height: number,
  width: number,
  options: Pick<Conv2dInputOptions, 'kernelSize' | 'strides' | 'padding' | 'dilationRate'>,
  where = 'conv2dGeometry',
): Conv2dGeometry {
  checkNumber(where, 'height', height, { min: 1, integer: true });
  checkNumber(where, 'width', width, { min: 1, integer: true });
  const kernelSize = checkSpatialPair(where, 'kernelSize', options.kernelSize);
  const strides = checkSpatialPair(where, 'strides', options.strides ?? 1);
  const dilationRate = checkSpatialPair(where, 'dilationRate', options.dilationRate ?? 1);
  const padding = checkOneOf(where, 'padding', options.padding ?? 'valid', ['valid', 'same'] as const);
  const axis = (size: number, k: number, stride: number, dilation: number): { out: number; padBefore: number } => {
    const effective = (k - 1) * dilation + 1;
    if (padding === 'same') {
      const out = Math.ceil(size / stride);
      const total = Math.max(0, (out - 1) * stride + effective - size);
      return { out, padBefore: Math.floor(total / 2) };
    }
    return { out: Math.ceil((size - effective + 1) / stride), padBefore: 0 };
  };
  const rows = axis(height, kernelSize[0], strides[0], dilationRate[0]);
  const cols = axis(width, kernelSize[1], strides[1], dilationRate[1]);
  if (rows.out < 1 || cols.out < 1) {
    throw new RangeError(
      `${where}: kernelSize [${kernelSize.join(', ')}] with dilationRate [${dilationRate.join(', ')}] ` +
        `does not fit an input of spatial size ${height}×${width} with padding 'valid'`,
    );
  }
  return {
    kernelSize,
    strides,
    dilationRate,
    outHeight: rows.out,
    outWidth: cols.out,
    padTop: rows.padBefore,
    padLeft: cols.padBefore,
  };
}

/**
 * `[k, size]` 0/1 matrix whose entry `(i, r)` is 1 when kernel offset `i` reads input index `r`
 * at some output position: `r = i·dilation + o·stride − padBefore` for an `o < out`.
 * Reads of the zero padding have no column, so they add nothing.
 */
function offsetSelection(k: number, size: number, out: number, stride: number, dilation: number, padBefore: number): tf.Tensor2D {
  const selection = new Float32Array(k * size);
  for (let i = 0; i < k; i++) {
    for (let o = 0; o < out; o++) {
      const r = i * dilation + o * stride - padBefore;
      if (r >= 0 && r < size) selection[i * size + r] = 1;
    }
  }
  return tf.tensor2d(selection, [k, size]);
}

/**
 * The rank-1 input vector `a` of a conv2d layer (NHWC input `[batch, H, W, cin]`, kernel
 * `[kh, kw, cin, cout]`): the mean over the batch and the `outH·outW` output positions of the
 * unfolded input patches (KFAC's treatment of convolutions, as the MKOR spec says),
 *
 *     a[(i·kw + j)·cin + c] = (1 / (batch·outH·outW)) Σ_b Σ_{p,q} x̂[b, i·dh + p·sh − padTop, j·dw + q·sw − padLeft, c]
 *
 * with `x̂` zero outside the input ('same' padding). The order is that of the kernel reshaped to
 * `[kh·kw·cin, cout]` (row-major over kh, kw, cin), so `a` matches that matrix's rows; a 1 is
 * appended with `appendOne` (the bias row), after an optional clamp to `±clamp`.
 *
 * The im2col matrix (`batch·outH·outW × kh·kw·cin`) is never formed: the batch mean `[H, W, cin]`
 * is contracted with a `[kh, H]` 0/1 matrix (which rows each kernel row offset visits) and a
 * `[kw, W]` one (columns) — two small matrix products, `O(H·W·cin·(kh + kw))`.
 * Strides and dilation may both exceed 1 here, although tf.conv2d refuses that combination.
 *
 * @returns a new `[kh·kw·cin]` (or `+ 1`) float32 tensor; `input` is not disposed.
 */
export function conv2dInputVector(input: tf.Tensor4D, options: Conv2dInputOptions): tf.Tensor1D {
  const where = 'conv2dInputVector';
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`${where}: options with a kernelSize are required, got ${String(options)}`);
  }
  const resolved = resolveRank1Options(where, { appendOne: options.appendOne, clamp: options.clamp });
  return tf.tidy(() => {
    const x = checkRows(where, 'input', input, NHWC);
    const [batch, height, width, channels] = x.shape as [number, number, number, number];
    const g = conv2dGeometry(height, width, options, where);
    const [kh, kw] = g.kernelSize;
    const rowSelection = offsetSelection(kh, height, g.outHeight, g.strides[0], g.dilationRate[0], g.padTop);
    const colSelection = offsetSelection(kw, width, g.outWidth, g.strides[1], g.dilationRate[1], g.padLeft);
    const batchMean = tf.reshape(tf.mean(x, 0), [height, width * channels]);
    // Σ over the output rows for each kernel row offset: [kh, W·cin], regrouped to [W, kh·cin].
    const byRowOffset = tf.matMul(rowSelection, batchMean);
    const widthFirst = tf.reshape(tf.transpose(tf.reshape(byRowOffset, [kh, width, channels]), [1, 0, 2]), [width, kh * channels]);
    // Σ over the output columns for each kernel column offset: [kw, kh·cin], back to (kh, kw, cin).
    const byOffset = tf.matMul(colSelection, widthFirst);
    const patchSum = tf.reshape(tf.transpose(tf.reshape(byOffset, [kw, kh, channels]), [1, 0, 2]), [kh * kw * channels]);
    const positions = g.outHeight * g.outWidth;
    const mean = tf.div(patchSum, tf.scalar(positions)) as tf.Tensor1D;
    return finishStatistic(mean, batch * positions, resolved);
  });
}

/**
 * The rank-1 output-gradient vector `g` of a conv2d layer: the mean of `dy`
 * (`[batch, outH, outW, cout]`, NHWC) over the batch and the output positions, `[cout]`,
 * times `n = batch·outH·outW` for `scale: 'sum'`, clamped to `±clamp` when given. It pairs with
 * {@link conv2dInputVector}: `∇W = Σ_{b,p} patch_{b,p} dy_{b,p}ᵀ ≈ n · a gᵀ` (mean scale).
 *
 * @returns a new `[cout]` float32 tensor; `dy` is not disposed.
 */
export function conv2dOutputGradVector(dy: tf.Tensor4D, options?: Conv2dOutputGradOptions): tf.Tensor1D {
  const where = 'conv2dOutputGradVector';
  const resolved = resolveRank1Options(where, { scale: options?.scale, clamp: options?.clamp });
  return tf.tidy(() => {
    const rows = checkRows(where, 'dy', dy, NHWC);
    const channels = rows.shape[3] as number;
    const n = rows.size / channels;
    return finishStatistic(tf.mean(tf.reshape(rows, [n, channels]), 0) as tf.Tensor1D, n, resolved);
  });
}
