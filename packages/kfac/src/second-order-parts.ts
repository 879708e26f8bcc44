import type { LayerStatistics, SecondOrderLayer } from '@mkor/capture';
import { type Hyperparameter, type TensorMap, checkNumber, checkOneOf, resolveHyperparameter } from '@mkor/core';
import { rescaleFactor, rescaleToNorm } from '@mkor/grad-rescale';
import * as tf from '@tensorflow/tfjs-core';

/**
 * The parts KFAC and Eva share: a layer's gradient as one matrix with the bias folded in, the
 * scale of the output-gradient statistics, and the final scaling of the preconditioned updates
 * (KL-clip or the norm rescale).
 */

/** A layer list, or a function returning it, called once at the first `init`. */
export type LayerSource = readonly SecondOrderLayer[] | (() => readonly SecondOrderLayer[]);

/** How the preconditioned updates are scaled before the first-order backend. */
export type UpdateScaling = 'kl-clip' | 'rescale' | 'none';

/** Options of the final scaling, shared by KFAC and Eva. */
export interface UpdateScalingOptions {
  /**
   * `'kl-clip'` (KAISA/Eva): every preconditioned update times
   * `ν = min(1, sqrt(κ / |Σ_layers Σ ΔW·∇W·lr²|))`; `'rescale'` (MKOR step 6, `@mkor/grad-rescale`):
   * each layer's `[ΔW Δb]` rescaled to the Frobenius norm of `[∇W ∇b]`; `'none'`. Default `'kl-clip'`.
   */
  readonly scaling?: UpdateScaling;
  /** κ of the KL-clip, > 0. Default 0.001 (KAISA). */
  readonly klClip?: number;
  /**
   * The learning rate `lr` in the KL-clip (a number or a schedule of the preconditioner's step);
   * required with `scaling: 'kl-clip'`. Use the backend's learning rate.
   */
  readonly learningRate?: Hyperparameter;
}

/** {@link UpdateScalingOptions} checked, with defaults. */
export interface ResolvedUpdateScaling {
  readonly scaling: UpdateScaling;
  readonly klClip: number;
  readonly learningRate: Hyperparameter | undefined;
}

/** Checks the scaling options, naming `where` in errors. */
export function resolveUpdateScaling(where: string, options: UpdateScalingOptions): ResolvedUpdateScaling {
  const scaling = checkOneOf(where, 'scaling', options.scaling ?? 'kl-clip', ['kl-clip', 'rescale', 'none'] as const);
  const klClip = checkNumber(where, 'klClip', options.klClip ?? 0.001, { min: 0, minExclusive: true });
  const learningRate = options.learningRate;
  if (typeof learningRate === 'number') checkNumber(where, 'learningRate', learningRate, { min: 0, minExclusive: true });
  else if (learningRate !== undefined && typeof learningRate !== 'function') {
    throw new TypeError(`${where}: learningRate must be a positive number or a schedule (step) => number, got ${typeof learningRate}`);
  }
  if (scaling === 'kl-clip' && learningRate === undefined) {
    throw new RangeError(`${where}: scaling 'kl-clip' needs the learningRate (the backend's), or choose scaling 'rescale' or 'none'`);
  }
  return { scaling, klClip, learningRate };
}

/** Checks a layer list: positive integer sizes, a kernel shape holding them, unique names. */
export function validateLayers(where: string, list: readonly SecondOrderLayer[]): readonly SecondOrderLayer[] {
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
  return list;
}

/** Resolves a {@link LayerSource} once: a list now, a function at the first call of the result. */
export function lazyLayers(where: string, layers: LayerSource): () => readonly SecondOrderLayer[] {
  let known: readonly SecondOrderLayer[] | undefined = typeof layers === 'function' ? undefined : validateLayers(where, layers);
  return () => {
    known ??= validateLayers(where, (layers as () => readonly SecondOrderLayer[])());
    return known;
  };
}

/** Rows of a layer's gradient matrix: `inputDim`, plus one for the folded bias. */
export function foldedInputSize(layer: SecondOrderLayer): number {
  return layer.inputDim + (layer.biasName === undefined ? 0 : 1);
}

/** Checks that the statistics match the layer's sizes. */
export function checkStatistics(where: string, layer: SecondOrderLayer, s: LayerStatistics): void {
  if (s.a.shape[0] !== layer.inputDim || s.g.shape[0] !== layer.outputDim) {
    throw new RangeError(
      `${where}(layer '${layer.name}'): statistics have a of length ${s.a.shape[0]} and g of length ${s.g.shape[0]}, ` +
        `expected ${layer.inputDim} and ${layer.outputDim}`,
    );
  }
}

/**
 * The factor by which the output-gradient statistics are scaled: 1 for `'mean'`; for `'sum'`
 * the count that undoes a mean-reduced loss's `1/batch` (as MKOR's `gradientScale`): the rows
 * for a dense layer (batch·seq for 3-D inputs), the batch size for a conv2d layer.
 */
export function outputGradientCount(layer: SecondOrderLayer, gradientScale: 'mean' | 'sum', s: LayerStatistics): number {
  if (gradientScale === 'mean') return 1;
  return layer.kind === 'conv2d' ? s.samples : s.rows;
}

/**
 * A layer's gradient in tfjs's kernel layout with the bias folded in: `[∇K; ∇b]`,
 * `[inputDim (+1), outputDim]` (the transpose of the paper's `[∇W | ∇b]`). Undefined when the
 * gradients hold no kernel gradient for the layer.
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

/** Splits a `[inputDim (+1), outputDim]` update back into the layer's kernel (and bias) updates. */
export function splitLayerUpdate(layer: SecondOrderLayer, update: tf.Tensor2D): Record<string, tf.Tensor> {
  const kernel = tf.reshape(tf.slice(update, [0, 0], [layer.inputDim, layer.outputDim]), [...layer.kernelShape]);
  if (layer.biasName === undefined) return { [layer.kernelName]: kernel };
  return { [layer.kernelName]: kernel, [layer.biasName]: tf.reshape(tf.slice(update, [layer.inputDim, 0], [1, layer.outputDim]), [layer.outputDim]) };
}

/**
 * The KL-clip factor of KAISA and Eva, `ν = min(1, sqrt(κ / |Σ ΔW·∇W·lr²|))`, the sum over
 * every entry of every preconditioned layer (`ΔW` the preconditioned update, `∇W` the
 * gradient, biases included). A zero sum gives ν = 1.
 */
export function klClipFactor(pairs: readonly { update: tf.Tensor; gradient: tf.Tensor }[], learningRate: number, kappa: number): tf.Scalar {
  return tf.tidy(() => {
    if (pairs.length === 0) return tf.scalar(1);
    const inner = tf.addN(pairs.map(({ update, gradient }) => tf.sum(tf.mul(update, gradient))));
    const divisor = tf.abs(tf.mul(inner, tf.scalar(learningRate * learningRate)));
    return tf.minimum(tf.scalar(1), tf.sqrt(tf.div(tf.scalar(kappa), divisor)));
  });
}

/**
 * Scales the preconditioned updates as `scaling` says; returns the scaled updates (in the
 * order given) and the factor applied to each (a scalar tensor).
 */
export function scaleUpdates(
  scaling: ResolvedUpdateScaling,
  step: number,
  where: string,
  pairs: readonly { update: tf.Tensor2D; gradient: tf.Tensor2D }[],
): { updates: tf.Tensor2D[]; factors: tf.Scalar[] } {
  if (scaling.scaling === 'none') return { updates: pairs.map((p) => p.update), factors: pairs.map(() => tf.scalar(1)) };
  if (scaling.scaling === 'rescale') {
    // rescaleToNorm falls back to the raw gradient where ν = ‖∇‖/‖Δ‖ is not finite and positive.
    return {
      updates: pairs.map(({ update, gradient }) => rescaleToNorm(update, gradient) as tf.Tensor2D),
      factors: pairs.map(({ update, gradient }) => rescaleFactor(update, gradient)),
    };
  }
  const learningRate = resolveHyperparameter(scaling.learningRate as Hyperparameter, step, `${where}: learningRate`);
  const nu = klClipFactor(pairs, learningRate, scaling.klClip);
  return { updates: pairs.map(({ update }) => tf.mul(update, nu) as tf.Tensor2D), factors: pairs.map(() => nu) };
}
