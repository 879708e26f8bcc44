import { conv2dInputVector, conv2dOutputGradVector, rank1Vector } from '@mkor/rank1';
import * as tf from '@tensorflow/tfjs-core';

import { type PatchGeometry, conv2dPatchSecondMoment, rowSecondMoment } from './covariance';
import type { Layer, LayerKindHandler, LinearLayerDescription, StatisticsFunctions } from './layer-kind';
import {
  type Conv2DFields,
  type LinearLayerFields,
  applyActivation,
  conv2dLinearPart,
  conv2dStrides,
  denseLinearPart,
} from './tfjs-layers-linear-part';

/**
 * `mean(clamp(s·xᵢ, ±c))/s` over the rows `xᵢ` (all axes but the last): the authors' per-row
 * clamp, applied to the rows scaled by `s` (the row count for output gradients, 1 for inputs).
 */
function clampedRowMean(x: tf.Tensor, clamp: number, scaleByRows: boolean): tf.Tensor1D {
  return tf.tidy(() => {
    const d = x.shape[x.rank - 1] as number;
    const rows = tf.reshape(x, [-1, d]);
    const scale = scaleByRows ? (rows.shape[0] as number) : 1;
    const clamped = tf.clipByValue(tf.mul(rows, scale), -clamp, clamp);
    return tf.div(tf.mean(clamped, 0), scale) as tf.Tensor1D;
  });
}

/**
 * The kernel and bias of a tfjs-layers Dense or Conv2D layer, the kernel seen as the matrix
 * `[product of all axes but the last, last axis]`; undefined before the layer is built.
 */
function kernelAndBias(layer: Layer): LinearLayerDescription | undefined {
  const { kernel, bias } = layer as unknown as LinearLayerFields;
  if (kernel === null) return undefined;
  const outputDim = kernel.shape[kernel.shape.length - 1]!;
  const inputDim = kernel.shape.reduce((product: number, size) => product * size!, 1) / outputDim;
  return { kernel, bias, inputDim, outputDim };
}

/**
 * tfjs-layers' `Dense` layer on inputs of any rank ≥ 2 (`[batch, d]`, `[batch, seq, d]`, …): the
 * rows are every position of every sample, `a` and `g` their means (`rank1Vector`), `A` and
 * `G` their second moments (`rowSecondMoment`); `n·g` counts the rows. Honours `rowClamp`:
 * `a = mean(clamp(xᵢ))`, `g = mean(clamp(n·dyᵢ))/n`.
 */
export const DENSE_LAYER_KIND: LayerKindHandler<undefined> = Object.freeze<LayerKindHandler<undefined>>({
  kind: 'dense',
  classNames: Object.freeze(['Dense']),
  gradientCount: 'rows',
  describe: kernelAndBias,
  linearPart: (layer, input) => denseLinearPart(layer as unknown as LinearLayerFields, input),
  activation: (layer, preActivation) => applyActivation(layer as unknown as LinearLayerFields, preActivation),
  statistics: (_geometry, { rowClamp }): StatisticsFunctions => ({
    input: rowClamp === undefined ? (x) => rank1Vector(x) : (x) => clampedRowMean(x, rowClamp, false),
    outputGradient: rowClamp === undefined ? (dy) => rank1Vector(dy) : (dy) => clampedRowMean(dy, rowClamp, true),
    inputCovariance: rowSecondMoment,
    outputGradientCovariance: rowSecondMoment,
  }),
});

/**
 * tfjs-layers' `Conv2D` layer, channelsLast with `'valid'` or `'same'` padding (others are left
 * first-order, with the reason): the rows are the unfolded input patches, one per sample and
 * output position, `a` their mean (`conv2dInputVector`, without forming them) and `A` their
 * second moment (`conv2dPatchSecondMoment`); `g` and `G` come from the output gradient's rows
 * (`conv2dOutputGradVector`, `rowSecondMoment`); `n·g` counts the samples. Ignores `rowClamp`
 * (the authors clamp per sample after the spatial mean, which a mean over all rows cannot
 * reproduce).
 */
export const CONV2D_LAYER_KIND: LayerKindHandler<PatchGeometry> = Object.freeze<LayerKindHandler<PatchGeometry>>({
  kind: 'conv2d',
  classNames: Object.freeze(['Conv2D']),
  gradientCount: 'samples',
  unsupported: (layer) => {
    const { dataFormat, padding } = layer as unknown as Conv2DFields;
    if (dataFormat !== 'channelsLast') return `Conv2D with dataFormat '${dataFormat}': only 'channelsLast' is captured`;
    if (padding !== 'valid' && padding !== 'same') return `Conv2D with padding '${padding}': only 'valid' and 'same' are captured`;
    return undefined;
  },
  describe: kernelAndBias,
  geometry: (layer) => {
    const fields = layer as unknown as Conv2DFields;
    return { kernelSize: [fields.kernelSize[0]!, fields.kernelSize[1]!], ...conv2dStrides(fields) };
  },
  linearPart: (layer, input) => conv2dLinearPart(layer as unknown as Conv2DFields, input),
  activation: (layer, preActivation) => applyActivation(layer as unknown as Conv2DFields, preActivation),
  statistics: (geometry): StatisticsFunctions => ({
    input: (x) => conv2dInputVector(x as tf.Tensor4D, geometry),
    outputGradient: (dy) => conv2dOutputGradVector(dy as tf.Tensor4D),
    inputCovariance: (x) => conv2dPatchSecondMoment(x as tf.Tensor4D, geometry),
    outputGradientCovariance: rowSecondMoment,
  }),
});

/**
 * The layer kinds `prepareModel` captures unless given others: {@link DENSE_LAYER_KIND} and
 * {@link CONV2D_LAYER_KIND}. Extend it with `layerKinds: [...DEFAULT_LAYER_KINDS, myKind]`.
 */
export const DEFAULT_LAYER_KINDS: readonly LayerKindHandler[] = Object.freeze([DENSE_LAYER_KIND, CONV2D_LAYER_KIND]);
