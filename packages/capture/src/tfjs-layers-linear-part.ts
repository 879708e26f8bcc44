/**
 * The linear part `y = x W (+ b)` of tfjs-layers' Dense and Conv2D layers, computed by exactly
 * the kernels their own `call` runs under a gradient tape, so that a prepared layer's outputs and
 * gradients are bit-identical to the original's. Follows tfjs-layers 4.22 (`Dense.call`,
 * `Conv.call`) and tfjs-core's unfusing of relu/elu while gradients are recorded.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayerVariable } from '@tensorflow/tfjs-layers';

/** A layer activation object (tfjs-layers `Activation`). */
export interface ActivationFunction {
  getClassName(): string;
  apply(x: tf.Tensor): tf.Tensor;
}

/** The fields of tfjs-layers' Dense and Conv2D layers the capture reads. */
export interface LinearLayerFields {
  kernel: LayerVariable | null;
  bias: LayerVariable | null;
  activation: ActivationFunction | null;
}

/** The fields of tfjs-layers' Conv2D layer the capture reads. */
export interface Conv2DFields extends LinearLayerFields {
  kernelSize: number[];
  strides: number[];
  padding: string;
  dataFormat: string;
  dilationRate: number | number[];
}

/** A Conv2D layer's strides, padding and dilation, as `tf.conv2d` takes them. */
export interface Conv2DStrides {
  readonly strides: [number, number];
  readonly padding: 'valid' | 'same';
  readonly dilationRate: [number, number];
}

/**
 * The name of the fused kernel activation tfjs-layers uses for this activation (`relu`,
 * `linear`, `elu`), or null: it decides which kernels the layer's own `call` runs.
 */
function fusedActivationName(activation: ActivationFunction | null): 'relu' | 'linear' | 'elu' | null {
  const name = activation?.getClassName();
  return name === 'relu' || name === 'linear' || name === 'elu' ? name : null;
}

/** `bias` shaped to broadcast over the last axis of a rank-`rank` tensor, as tfjs-layers' biasAdd does. */
function broadcastableBias(bias: tf.Tensor, rank: number): tf.Tensor {
  return rank < 3 ? bias : tf.reshape(bias, [...new Array<number>(rank - 1).fill(1), bias.size]);
}

/**
 * The pre-activation output of a Dense layer, by exactly the kernels tfjs-layers' `Dense.call`
 * runs under a gradient tape (so outputs and gradients are bit-identical): the fused matMul with
 * its bias for a linear activation, the fused matMul then a broadcast add for activations that
 * are not fusable, and a plain matMul plus add for relu/elu (tfjs-core unfuses those while
 * recording gradients).
 */
export function denseLinearPart(fields: LinearLayerFields, input: tf.Tensor): tf.Tensor {
  const kernel = fields.kernel!.read();
  const bias = fields.bias?.read() ?? null;
  const [inputDim, outputDim] = kernel.shape as [number, number];
  const rows = input.rank === 2 ? input : tf.reshape(input, [-1, inputDim]);
  const outputShape = [...input.shape.slice(0, -1), outputDim];
  const fused = fusedActivationName(fields.activation);
  if (fused === 'linear') {
    return tf.reshape(tf.fused.matMul({ a: rows, b: kernel, bias: bias ?? undefined, activation: 'linear' }), outputShape);
  }
  if (fused === null) {
    const product = tf.reshape(tf.fused.matMul({ a: rows, b: kernel }), outputShape);
    return bias === null ? product : tf.add(product, broadcastableBias(bias, product.rank));
  }
  const product = tf.matMul(rows, kernel);
  return tf.reshape(bias === null ? product : tf.add(product, bias), outputShape);
}

/** A Conv2D layer's strides, padding and dilation as pairs. */
export function conv2dStrides(fields: Conv2DFields): Conv2DStrides {
  const dilation = fields.dilationRate;
  return {
    strides: [fields.strides[0]!, fields.strides[1]!],
    padding: fields.padding as 'valid' | 'same',
    dilationRate: typeof dilation === 'number' ? [dilation, dilation] : [dilation[0]!, dilation[1]!],
  };
}

/**
 * The pre-activation output of a channelsLast Conv2D layer, by exactly the kernels
 * tfjs-layers' `Conv2D.call` runs under a gradient tape: the fused conv2d with its bias, or
 * for relu/elu a plain conv2d plus add.
 */
export function conv2dLinearPart(fields: Conv2DFields, input: tf.Tensor): tf.Tensor {
  const kernel = fields.kernel!.read() as tf.Tensor4D;
  const bias = fields.bias?.read() ?? null;
  const { strides, padding, dilationRate } = conv2dStrides(fields);
  const fused = fusedActivationName(fields.activation);
  if (fused === 'relu' || fused === 'elu') {
    const product = tf.conv2d(input as tf.Tensor4D, kernel, strides, padding, 'NHWC', dilationRate);
    return bias === null ? product : tf.add(product, bias);
  }
  return tf.fused.conv2d({
    x: input as tf.Tensor4D,
    filter: kernel,
    strides,
    pad: padding,
    dataFormat: 'NHWC',
    dilations: dilationRate,
    bias: bias ?? undefined,
    activation: 'linear',
  });
}

/** The layer's own activation applied to its pre-activation output (none: unchanged). */
export function applyActivation(fields: LinearLayerFields, preActivation: tf.Tensor): tf.Tensor {
  return fields.activation === null ? preActivation : fields.activation.apply(preActivation);
}
