import type { LayerStatistics, SecondOrderLayer } from '@mkor/capture';
import {
  type Hyperparameter,
  type SkipNonFiniteState,
  type TensorMap,
  type Transform,
  chain,
  checkNumber,
  checkOneOf,
  resolveHyperparameter,
  skipNonFinite,
} from '@mkor/core';
import { rescaleFactor, rescaleToNorm } from '@mkor/grad-rescale';
import * as tf from '@tensorflow/tfjs-core';

/**
 * The parts KFAC and Eva share: their common options, a layer's gradient as one matrix with the
 * bias folded in, the scale of the output-gradient statistics, the final scaling of the
 * preconditioned updates (KL-clip or the norm rescale), and the composition with a backend.
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

/**
 * The options KFAC and Eva share: the scaling, the momentum of their moving averages, the scale of
 * the output-gradient statistics, and metrics. Each method's options extend these (and document
 * `gamma` as what it averages).
 */
export interface SecondOrderOptions extends UpdateScalingOptions {
  /** Momentum γ ∈ (0, 1) of the moving averages of the statistics. Default 0.95. */
  readonly gamma?: number;
  /**
   * Scale of the output-gradient statistics: `'mean'` as captured, or `'sum'` (default): times
   * `count` (see {@link outputGradientCount}), which undoes a mean-reduced loss's `1/batch`.
   */
  readonly gradientScale?: 'mean' | 'sum';
  /** Read back the scale factors each step for the step metrics. Default true. */
  readonly collectMetrics?: boolean;
}

/** {@link SecondOrderOptions} checked, with defaults. */
export interface ResolvedSecondOrderOptions extends ResolvedUpdateScaling {
  readonly gamma: number;
  readonly gradientScale: 'mean' | 'sum';
  readonly collectMetrics: boolean;
}

/**
 * Checks the options KFAC and Eva share and fills in their defaults (γ = 0.95, `gradientScale`
 * `'sum'`, metrics on, the scaling's as {@link resolveUpdateScaling}); errors name `where`.
 */
export function resolveSecondOrderOptions(where: string, options: SecondOrderOptions): ResolvedSecondOrderOptions {
  if (options === null || typeof options !== 'object') throw new TypeError(`${where}: options must be an object, got ${String(options)}`);
  return {
    ...resolveUpdateScaling(where, options),
    gamma: checkNumber(where, 'gamma', options.gamma ?? 0.95, { min: 0, max: 1, minExclusive: true, maxExclusive: true }),
    gradientScale: checkOneOf(where, 'gradientScale', options.gradientScale ?? 'sum', ['mean', 'sum'] as const),
    collectMetrics: options.collectMetrics ?? true,
  };
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

/** What every step of KFAC and Eva reports (their step metrics extend this). */
export interface SecondOrderStepMetrics {
  /** The preconditioner's step (0 for the first). */
  readonly step: number;
  /** The factor each layer's update was scaled by (ν of the KL-clip, or the rescale factor); empty with `scaling: 'none'`. */
  readonly scaleFactors: Readonly<Record<string, number>>;
  /**
   * Milliseconds spent bringing the per-layer state up to date with the statistics: KFAC folds
   * the covariances into its factors and, on the steps that do so, recomputes the damped
   * inverses; Eva updates the moving averages of the rank-1 vectors. Measured with
   * `performance.now()` around it: exact on synchronous backends (wasm, cpu).
   */
  readonly factorMs: number;
  /**
   * Milliseconds spent preconditioning (KFAC's two products, Eva's closed form), scaling the
   * updates (KL-clip or rescale) and reading the metrics back. Measured with `performance.now()`
   * around it: exact on synchronous backends (wasm, cpu).
   */
  readonly preconditionMs: number;
}

/** What {@link preconditionLayers} returns. */
export interface PreconditionedLayers {
  /** The scaled updates of the preconditioned layers' variables; other gradients pass through. */
  readonly updates: Record<string, tf.Tensor>;
  /**
   * The factor each preconditioned layer's update was scaled by, read back (one read-back);
   * empty without `collectMetrics` or with `scaling: 'none'`.
   */
  readonly scaleFactors: Readonly<Record<string, number>>;
}

/**
 * The preconditioning step of KFAC and Eva: for every layer with a kernel gradient, the gradient
 * as one matrix ({@link layerGradientMatrix}) through `precondition`, then the updates of all of
 * them scaled together as `options.scaling` says ({@link scaleUpdates}) and split back into the
 * layers' variables ({@link splitLayerUpdate}). With `collectMetrics` the scale factors are read
 * back for the step's metrics.
 */
export function preconditionLayers(
  where: string,
  layers: readonly SecondOrderLayer[],
  gradients: TensorMap,
  step: number,
  options: ResolvedUpdateScaling & { readonly collectMetrics: boolean },
  precondition: (layer: SecondOrderLayer, gradient: tf.Tensor2D) => tf.Tensor2D,
): PreconditionedLayers {
  const used: SecondOrderLayer[] = [];
  const pairs: { update: tf.Tensor2D; gradient: tf.Tensor2D }[] = [];
  for (const layer of layers) {
    const gradient = layerGradientMatrix(where, layer, gradients);
    if (gradient === undefined) continue;
    used.push(layer);
    pairs.push({ update: precondition(layer, gradient), gradient });
  }
  const scaled = scaleUpdates(options, step, where, pairs);
  const updates: Record<string, tf.Tensor> = { ...gradients };
  used.forEach((layer, i) => Object.assign(updates, splitLayerUpdate(layer, scaled.updates[i] as tf.Tensor2D)));
  const read = options.collectMetrics && options.scaling !== 'none' && scaled.factors.length > 0 ? tf.stack(scaled.factors).dataSync() : undefined;
  return { updates, scaleFactors: Object.fromEntries(read === undefined ? [] : used.map((layer, i) => [layer.name, read[i] as number])) };
}

/** The layers and the backend of a preconditioner composed by {@link withBackend}. */
export interface SecondOrderTransformOptions {
  /**
   * The second-order layers (e.g. `prepareModel(model).secondOrder`, with `{ covariance: true }`
   * for KFAC), or a function returning them, called once at the first `init`.
   */
  readonly layers: LayerSource;
  /** The first-order transform that turns the preconditioned gradients into parameter deltas, e.g. `sgd(...)`, `adam(...)`. */
  readonly backend: Transform<unknown>;
}

/** The state of a preconditioner composed by {@link withBackend}: the NaN guard around `[preconditioner, backend]`. */
export type SecondOrderState<P> = SkipNonFiniteState<[P, unknown]>;

/** A preconditioner composed with its backend by {@link withBackend}, with accessors for what its state holds. */
export interface SecondOrderTransform<P extends { readonly metrics: unknown }> extends Transform<SecondOrderState<P>> {
  /** The preconditioner's part of the state. */
  readonly preconditionerState: (state: SecondOrderState<P>) => P;
  /** The latest step's metrics, or null (before the first step, or without `collectMetrics`). */
  readonly metrics: (state: SecondOrderState<P>) => P['metrics'];
}

/**
 * `skipNonFinite(chain(createPreconditioner(layers, options), backend))`: a step whose gradients
 * hold NaN or Inf is skipped whole (the preconditioner's state, the backend's moments and the
 * weights are left as they were) and counted. `backend` must be a transform (a `TypeError`
 * naming `where` otherwise, before the preconditioner is made).
 */
export function withBackend<O, P extends { readonly metrics: unknown }>(
  where: string,
  createPreconditioner: (layers: LayerSource, options: O) => Transform<P>,
  options: O & SecondOrderTransformOptions,
): SecondOrderTransform<P> {
  const { layers, backend, ...preconditionerOptions } = options;
  if (backend === undefined || typeof backend.update !== 'function') {
    throw new TypeError(`${where}: backend must be a first-order Transform, e.g. sgd({ learningRate: 0.1 })`);
  }
  const composed = skipNonFinite(chain(createPreconditioner(layers, preconditionerOptions as O), backend));
  return {
    init: composed.init as SecondOrderTransform<P>['init'],
    update: composed.update as SecondOrderTransform<P>['update'],
    preconditionerState: (state) => state.inner[0],
    metrics: (state) => state.inner[0].metrics,
  };
}
