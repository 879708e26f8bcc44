import type { SecondOrderLayer } from '@mkor/capture';
import { type TensorMap, checkNumber } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';

/** A layer list, or a function returning it, called once at the first `init`. */
export type LayerSource = readonly SecondOrderLayer[] | (() => readonly SecondOrderLayer[]);

/**
 * A second-order layer as a curvature block sees it: the capture's description plus the size of
 * its gradient matrix with the bias folded in.
 */
export interface BlockLayer extends SecondOrderLayer {
  /** Rows of the layer's gradient matrix `[∇K; ∇b]`: `inputDim`, plus one when the bias is folded in. */
  readonly foldedInputDim: number;
}

/** The layer with {@link BlockLayer.foldedInputDim}. */
export function blockLayer(layer: SecondOrderLayer): BlockLayer {
  return { ...layer, foldedInputDim: layer.inputDim + (layer.biasName === undefined ? 0 : 1) };
}

/** Checks a layer list (positive integer sizes, a kernel shape holding them, unique names), naming `where`. */
export function validateLayers(where: string, list: readonly SecondOrderLayer[]): readonly BlockLayer[] {
  if (!Array.isArray(list)) throw new TypeError(`${where}: layers must be an array of layers`);
  const names = new Set<string>();
  for (const layer of list) {
    const at = `${where}(layer '${layer.name}')`;
    checkNumber(at, 'inputDim', layer.inputDim, { min: 1, integer: true });
    checkNumber(at, 'outputDim', layer.outputDim, { min: 1, integer: true });
    const size = layer.kernelShape.reduce((product: number, axis: number) => product * axis, 1);
    if (size !== layer.inputDim * layer.outputDim) {
      throw new RangeError(`${at}: kernelShape [${layer.kernelShape.join(', ')}] does not hold ${layer.inputDim}×${layer.outputDim} entries`);
    }
    if (names.has(layer.name)) throw new RangeError(`${where}: layer '${layer.name}' is listed twice`);
    names.add(layer.name);
  }
  return list.map(blockLayer);
}

/**
 * Resolves a {@link LayerSource} once, checked by {@link validateLayers}: a list now, a function at
 * the first call of the result (for captures whose layers register during the first forward pass,
 * like `createCapture`).
 */
export function lazyLayers(where: string, layers: LayerSource): () => readonly BlockLayer[] {
  if (typeof layers !== 'function' && !Array.isArray(layers)) {
    throw new TypeError(`${where}: layers must be an array of layers or a function returning one, e.g. () => capture.secondOrder`);
  }
  let known: readonly BlockLayer[] | undefined = typeof layers === 'function' ? undefined : validateLayers(where, layers);
  return () => {
    known ??= validateLayers(where, (layers as () => readonly SecondOrderLayer[])());
    return known;
  };
}

/**
 * A layer's gradient in tfjs's kernel layout with the bias folded in: `[∇K; ∇b]`,
 * `[inputDim (+1), outputDim]` (the transpose of the paper's `[∇W | ∇b]`). Undefined when the
 * gradients hold no kernel gradient for the layer; a `RangeError` when they hold the kernel's but
 * not the bias's.
 */
export function layerGradientMatrix(where: string, layer: SecondOrderLayer, gradients: TensorMap): tf.Tensor2D | undefined {
  const kernelGrad = gradients[layer.kernelName];
  if (kernelGrad === undefined) return undefined;
  const kernelMatrix = tf.reshape(kernelGrad, [layer.inputDim, layer.outputDim]) as tf.Tensor2D;
  if (layer.biasName === undefined) return kernelMatrix;
  const biasGrad = gradients[layer.biasName];
  if (biasGrad === undefined) throw new RangeError(`${where}: layer '${layer.name}' has a kernel gradient but no bias gradient`);
  return tf.concat<tf.Tensor2D>([kernelMatrix, tf.reshape(biasGrad, [1, layer.outputDim])], 0);
}

/** The kernel rows `[inputDim, outputDim]` and the bias row `[1, outputDim]` (when folded in) of a `[∇K; ∇b]`-shaped matrix. */
export function splitKernelAndBias(layer: SecondOrderLayer, matrix: tf.Tensor2D): { kernel: tf.Tensor2D; bias?: tf.Tensor2D } {
  const kernel = tf.slice(matrix, [0, 0], [layer.inputDim, layer.outputDim]);
  return layer.biasName === undefined ? { kernel } : { kernel, bias: tf.slice(matrix, [layer.inputDim, 0], [1, layer.outputDim]) };
}

/** Splits a `[inputDim (+1), outputDim]` update back into the layer's kernel (and bias) updates, in their variables' shapes. */
export function splitLayerUpdate(layer: SecondOrderLayer, update: tf.Tensor2D): Record<string, tf.Tensor> {
  const { kernel, bias } = splitKernelAndBias(layer, update);
  const kernelUpdate = tf.reshape(kernel, [...layer.kernelShape]);
  if (layer.biasName === undefined || bias === undefined) return { [layer.kernelName]: kernelUpdate };
  return { [layer.kernelName]: kernelUpdate, [layer.biasName]: tf.reshape(bias, [layer.outputDim]) };
}
