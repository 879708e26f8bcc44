import { checkNumber } from '@mkor/core';
import type { LayersModel } from '@tensorflow/tfjs-layers';

import { type ClassificationRules, classifyLayer } from './classify-layer';
import { DEFAULT_LAYER_KINDS } from './default-layer-kinds';
import { type Layer, type LayerKindHandler, checkLayerKinds, secondOrderLayer, statisticsFunctionsOf } from './layer-kind';
import { isContainer, walkModel } from './model-walk';
import { type LayerToPatch, isPrepared, patchLayers } from './patch-layer';
import { RegistryState, resolveMaxDim } from './registry';
import { vectorsToRecord } from './statistics-store';
import type { CaptureRegistry } from './types';

/** Options of {@link prepareModel}. */
export interface PrepareModelOptions {
  /**
   * The widest layer captured: a layer whose kernel matrix has more than `maxDim` rows or
   * columns goes to `firstOrder` (its `d × d` factors would be too large). An integer ≥ 1;
   * default 4096.
   */
  maxDim?: number;
  /**
   * Called with every layer that could be captured; returning false sends it to `firstOrder`
   * (e.g. `(layer) => layer.name !== 'logits'` to leave the output layer alone).
   */
  include?: (layer: Layer) => boolean;
  /**
   * Also record, per step, the full second moments KFAC needs (`statistics(name).covariance`:
   * `(1/n) XᵀX` and `(1/n) Σ dyᵢ dyᵢᵀ`, see `CovarianceStatistics`). Costs two `d × d`
   * matrix products per layer and step, and for Conv2D the unfolded patches
   * (`batch·outH·outW × kh·kw·cin` floats) for the duration of the forward pass. Default false.
   */
  covariance?: boolean;
  /**
   * Clamp every row to ±`rowClamp` before averaging, as the authors' MKOR code does (±100), for
   * Dense layers: `a = mean(clamp(xᵢ))` and `g = mean(clamp(n·dyᵢ))/n` with n the row count (so
   * that the consumer's n·g is the authors' value). Conv2D layers are not clamped (the authors
   * clamp per sample after the spatial mean, which the joint mean here cannot reproduce).
   * Passed to every kind's `statistics`; a kind may ignore it. Default: no clamp.
   */
  rowClamp?: number;
  /**
   * The table of layer kinds captured (see {@link LayerKindHandler}): a layer whose class is in
   * an entry's `classNames` is captured as that kind. Default {@link DEFAULT_LAYER_KINDS}
   * (Dense and Conv2D); add a kind with `[...DEFAULT_LAYER_KINDS, myKind]`. Each kind and class
   * name appears at most once.
   */
  layerKinds?: readonly LayerKindHandler[];
}

/** The options of {@link prepareModel}, checked, with their defaults. */
interface ResolvedOptions extends ClassificationRules {
  readonly covariance: boolean;
  readonly rowClamp: number | undefined;
}

function resolveOptions(where: string, options: PrepareModelOptions): ResolvedOptions {
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`${where}: options must be an object, got ${String(options)}`);
  }
  const maxDim = resolveMaxDim(where, options.maxDim);
  const include = options.include;
  if (include !== undefined && typeof include !== 'function') {
    throw new TypeError(`${where}: include must be a function (layer) => boolean, got ${typeof include}`);
  }
  const rowClamp =
    options.rowClamp === undefined
      ? undefined
      : checkNumber(where, 'rowClamp', options.rowClamp, { min: 0, minExclusive: true });
  const covariance = options.covariance ?? false;
  if (typeof covariance !== 'boolean') {
    throw new TypeError(`${where}: covariance must be a boolean, got ${typeof covariance}`);
  }
  const kinds = checkLayerKinds(where, options.layerKinds ?? DEFAULT_LAYER_KINDS);
  return { maxDim, include, rowClamp, covariance, kinds };
}

/**
 * Prepares an existing `tf.Sequential` or functional `tf.LayersModel` (nothing is rebuilt) for a
 * second-order optimizer: on every training step, each layer of a kind in `layerKinds` — by
 * default each Dense layer (on `[batch, d]`, `[batch, seq, d]` or any rank ≥ 2) and each
 * channelsLast Conv2D layer — records the rank-1 statistics of MKOR Algorithm 1, step 1,
 *
 *     a = (1/n) Σᵢ xᵢ                 (input rows; unfolded patches for Conv2D)
 *     g = (1/n) Σᵢ ∂Loss/∂yᵢ          (pre-activation output rows)
 *
 * which the registry pairs per step: the forward pass (when a gradient tape records, as in
 * `model.fit`, `optimizer.minimize` or `tf.variableGrads`) records `a`; the backward pass
 * through the same layer commits `(a, g, n)`. Forward passes without a tape (`predict`,
 * `evaluate`) run the layer's own code and commit nothing.
 *
 * How: the layer instance's `call` is replaced (its class, config and serialisation are
 * untouched) by one that computes the linear part `x W + b` with the same kernels as the
 * original (the kind's `linearPart`), passes it through an identity whose custom gradient reads
 * `∂Loss/∂y` on its way back (for fused activations too: `g` is the gradient with respect to the
 * pre-activation output), then applies the layer's activation. Outputs and variable gradients
 * are bit-identical to the unprepared model's. Only `d`-sized vectors are kept between steps.
 *
 * Layers with trainable variables that are not captured go to `firstOrder` with a reason:
 * embeddings, normalisations, classes of no kind in `layerKinds`, configurations their kind does
 * not capture (channelsFirst or causal Conv2D), layers wider than `maxDim`, layers applied more
 * than once per forward pass (shared layers), and those `include` rejects. Nested models (a
 * model used as a layer) are walked: their layers are named `outer/inner`.
 *
 * Throws when a layer is already prepared by another registry that was not released, and, naming
 * the entry, when `layerKinds` holds a malformed entry.
 */
export function prepareModel(model: LayersModel, options: PrepareModelOptions = {}): CaptureRegistry {
  const where = 'prepareModel';
  if (!isContainer(model)) {
    throw new TypeError(`${where}: model must be a tf.LayersModel or tf.Sequential, got ${model === null ? 'null' : typeof model}`);
  }
  const resolved = resolveOptions(where, options);
  const state = new RegistryState(where);
  const toPatch: LayerToPatch[] = [];
  for (const walked of walkModel(model)) {
    const { layer, name, variables } = walked;
    const classification = classifyLayer(where, walked, resolved);
    if ('reason' in classification) {
      state.addFirstOrder({ name, variables, reason: classification.reason });
      continue;
    }
    if (isPrepared(layer)) {
      throw new Error(
        `${where}: layer '${name}' is already prepared by another registry (e.g. of an optimizer built on this model that was not disposed); ` +
          'dispose() that optimizer (clone what you keep of its getWeights() first) or release() that registry first',
      );
    }
    const { handler, description } = classification;
    const { kernel, bias, inputDim, outputDim } = description;
    state.addSecondOrder(
      secondOrderLayer(name, handler, { kernelName: kernel.name, biasName: bias?.name, inputDim, outputDim, kernelShape: kernel.shape as number[] }),
    );
    const functions = statisticsFunctionsOf(where, handler, handler.geometry?.(layer), { rowClamp: resolved.rowClamp });
    toPatch.push({ layer, name, handler, vectors: vectorsToRecord(functions, resolved.covariance) });
  }
  return state.registry(patchLayers(where, toPatch, state));
}
