import type { LayerStatistics, SecondOrderLayer } from '@mkor/capture';
import * as tf from '@tensorflow/tfjs-core';

import type { BlockLayer } from './layers';

/** Scale of the output-gradient statistics (see {@link outputGradientCount}). */
export type GradientScale = 'mean' | 'sum';

/**
 * A layer's statistics of one step as a curvature block absorbs them: the bias folded into the
 * input side, the output side scaled as `gradientScale` says. Prepared by the layer loop; the
 * tensors are the step's (do not keep them past the step without cloning).
 */
export interface BlockStatistics {
  /** `[a, 1]` with the bias folded in, else `a`: length `foldedInputDim`. */
  readonly a: tf.Tensor1D;
  /** `n·g` with `gradientScale: 'sum'` (n from {@link outputGradientCount}), else `g`: length `outputDim`. */
  readonly g: tf.Tensor1D;
  /**
   * The second moments, present when the block needs them (`needsCovariance`): the input side
   * with the bias folded in, `[[A, a], [aᵀ, 1]]` (`[foldedInputDim, foldedInputDim]`), and the
   * output side times `n²`.
   */
  readonly covariance?: { readonly a: tf.Tensor2D; readonly g: tf.Tensor2D };
  /** The capture's statistics as they came (rows, samples, the step serial). */
  readonly captured: LayerStatistics;
}

/**
 * The factor by which the output-gradient statistics are scaled: 1 for `'mean'`; for `'sum'` the
 * count that undoes a mean-reduced loss's `1/batch`, as the authors' MKOR code does, as the layer's
 * kind says (`SecondOrderLayer.gradientCount`, from capture's table of layer kinds): the rows for a
 * dense layer (batch·seq for 3-D inputs), the batch size for a conv2d layer (the loss averages over
 * samples, not positions).
 */
export function outputGradientCount(layer: SecondOrderLayer, gradientScale: GradientScale, s: LayerStatistics): number {
  if (gradientScale === 'mean') return 1;
  return layer.gradientCount === 'samples' ? s.samples : s.rows;
}

/** Checks that statistics match the layer's sizes (and carry covariances when `needsCovariance`), naming `where`. */
export function checkStatistics(where: string, layer: SecondOrderLayer, s: LayerStatistics, needsCovariance: boolean): void {
  const at = `${where}(layer '${layer.name}')`;
  if (s.a.shape[0] !== layer.inputDim || s.g.shape[0] !== layer.outputDim) {
    throw new RangeError(
      `${at}: statistics have a of length ${s.a.shape[0]} and g of length ${s.g.shape[0]}, expected ${layer.inputDim} and ${layer.outputDim}`,
    );
  }
  if (!needsCovariance) return;
  if (s.covariance === undefined) {
    throw new RangeError(`${at}: the statistics carry no covariance: capture with { covariance: true } (prepareModel or createCapture)`);
  }
  if (s.covariance.a.shape[0] !== layer.inputDim || s.covariance.g.shape[0] !== layer.outputDim) {
    throw new RangeError(
      `${at}: covariances of shapes [${s.covariance.a.shape.join(', ')}] and [${s.covariance.g.shape.join(', ')}], ` +
        `expected [${layer.inputDim}, ${layer.inputDim}] and [${layer.outputDim}, ${layer.outputDim}]`,
    );
  }
}

/** `[[C, a], [aᵀ, 1]]`: the second moment of the rows `[x, 1]`, or `C` for a layer without bias. */
function foldedInputCovariance(layer: SecondOrderLayer, s: LayerStatistics, covariance: tf.Tensor2D): tf.Tensor2D {
  if (layer.biasName === undefined) return covariance;
  const column = tf.reshape(s.a, [layer.inputDim, 1]) as tf.Tensor2D;
  const top = tf.concat<tf.Tensor2D>([covariance, column], 1);
  const bottom = tf.concat<tf.Tensor2D>([tf.reshape(s.a, [1, layer.inputDim]) as tf.Tensor2D, tf.ones([1, 1])], 1);
  return tf.concat<tf.Tensor2D>([top, bottom], 0);
}

/**
 * The {@link BlockStatistics} of a layer from its captured statistics (checked first with
 * {@link checkStatistics}): `a` with a 1 appended for the bias, `g` times the count, and with
 * `needsCovariance` the folded input covariance and the output one times the count squared.
 */
export function prepareStatistics(
  where: string,
  layer: BlockLayer,
  s: LayerStatistics,
  options: { readonly gradientScale: GradientScale; readonly needsCovariance: boolean },
): BlockStatistics {
  checkStatistics(where, layer, s, options.needsCovariance);
  const count = outputGradientCount(layer, options.gradientScale, s);
  const a = layer.biasName === undefined ? s.a : tf.concat<tf.Tensor1D>([s.a, tf.ones([1])]);
  const g = count === 1 ? s.g : tf.mul<tf.Tensor1D>(s.g, tf.scalar(count));
  if (!options.needsCovariance || s.covariance === undefined) return { a, g, captured: s };
  const covariance = {
    a: foldedInputCovariance(layer, s, s.covariance.a),
    g: count === 1 ? s.covariance.g : tf.mul<tf.Tensor2D>(s.covariance.g, tf.scalar(count * count)),
  };
  return { a, g, covariance, captured: s };
}
