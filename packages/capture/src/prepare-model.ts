import { checkNumber } from '@mkor/core';
import { conv2dInputVector, conv2dOutputGradVector, rank1Vector } from '@mkor/rank1';
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel, LayerVariable } from '@tensorflow/tfjs-layers';

import { type PatchGeometry, conv2dPatchSecondMoment, rowSecondMoment } from './covariance';
import { RegistryState, resolveMaxDim, widthReason } from './registry';
import { captureThrough, type StatisticsVectors } from './statistics-store';
import type { CaptureRegistry, LayerKind, SecondOrderLayer } from './types';

/** A tfjs-layers layer (any class), as `model.layers` lists it. */
export type Layer = LayersModel['layers'][number];

/** Options of {@link prepareModel}. */
export interface PrepareModelOptions {
  /**
   * The widest layer captured: a Dense or Conv2D layer whose kernel matrix has more than
   * `maxDim` rows or columns goes to `firstOrder` (its `d × d` factors would be too large).
   * An integer ≥ 1; default 4096.
   */
  maxDim?: number;
  /**
   * Called with every Dense and Conv2D layer that could be captured; returning false sends it
   * to `firstOrder` (e.g. `(layer) => layer.name !== 'logits'` to leave the output layer alone).
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
   * Default: no clamp.
   */
  rowClamp?: number;
}

type CallFunction = Layer['call'];

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

/** A layer activation object (tfjs-layers `Activation`). */
interface ActivationFunction {
  getClassName(): string;
  apply(x: tf.Tensor): tf.Tensor;
}

/** The fields of tfjs-layers' Dense and Conv2D layers the capture reads. */
interface LinearLayerFields {
  kernel: LayerVariable | null;
  bias: LayerVariable | null;
  activation: ActivationFunction | null;
  invokeCallHook(inputs: tf.Tensor | tf.Tensor[], kwargs: Parameters<CallFunction>[1]): void;
}

interface Conv2DFields extends LinearLayerFields {
  kernelSize: number[];
  strides: number[];
  padding: string;
  dataFormat: string;
  dilationRate: number | number[];
}

/** A model used as a layer: a container with layers of its own. */
interface ContainerFields {
  layers: Layer[];
  containerNodes: Set<string>;
}

interface WrappedLayer {
  readonly layer: Layer;
  /** The layer's own `call` property before wrapping (normally none: `call` is on the prototype). */
  readonly ownCall: PropertyDescriptor | undefined;
}

/** Layers currently wrapped by some registry: a layer is prepared at most once at a time. */
const preparedLayers = new WeakSet<Layer>();

function isContainer(layer: Layer): layer is Layer & ContainerFields {
  return Array.isArray((layer as Partial<ContainerFields>).layers);
}

function trainableVariableNames(layer: Layer): string[] {
  return layer.weights.filter((w) => w.trainable).map((w) => w.name);
}

/**
 * How many times `container` applies `layer` in one forward pass: the layer's nodes that belong
 * to the container's graph (a Sequential applies each listed layer once per listing).
 */
function applicationsIn(container: ContainerFields, layer: Layer): number {
  if (container.containerNodes.size === 0) return container.layers.filter((l) => l === layer).length;
  const nodes = (layer as unknown as { inboundNodes: unknown[] }).inboundNodes;
  return nodes.filter((_, index) => container.containerNodes.has(`${layer.name}_ib-${index}`)).length;
}

/**
 * The name of the fused kernel activation tfjs-layers uses for this activation (`relu`,
 * `linear`, `elu`), or null: it decides which kernels the layer's own `call` runs.
 */
function fusedActivationName(activation: ActivationFunction | null): 'relu' | 'linear' | 'elu' | null {
  const name = activation?.getClassName();
  return name === 'relu' || name === 'linear' || name === 'elu' ? name : null;
}

function singleInput(layerName: string, inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
  if (!Array.isArray(inputs)) return inputs;
  if (inputs.length !== 1) {
    throw new Error(`prepareModel: layer '${layerName}' expects exactly one input tensor, got ${inputs.length}`);
  }
  return inputs[0]!;
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
function denseLinearPart(fields: LinearLayerFields, input: tf.Tensor): tf.Tensor {
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

function convGeometry(fields: Conv2DFields): {
  strides: [number, number];
  padding: 'valid' | 'same';
  dilationRate: [number, number];
} {
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
function conv2dLinearPart(fields: Conv2DFields, input: tf.Tensor): tf.Tensor {
  const kernel = fields.kernel!.read() as tf.Tensor4D;
  const bias = fields.bias?.read() ?? null;
  const { strides, padding, dilationRate } = convGeometry(fields);
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

/** The candidate's kind, or why it is first-order. */
function classify(layer: Layer): { kind: LayerKind } | { reason: string } {
  const className = layer.getClassName();
  switch (className) {
    case 'Dense':
      return { kind: 'dense' };
    case 'Conv2D': {
      const fields = layer as unknown as Conv2DFields;
      if (fields.dataFormat !== 'channelsLast') {
        return { reason: `Conv2D with dataFormat '${fields.dataFormat}': only 'channelsLast' is captured` };
      }
      if (fields.padding !== 'valid' && fields.padding !== 'same') {
        return { reason: `Conv2D with padding '${fields.padding}': only 'valid' and 'same' are captured` };
      }
      return { kind: 'conv2d' };
    }
    case 'Embedding':
      return { reason: 'embedding: a table lookup by index, no input vector to precondition with' };
    case 'LayerNormalization':
    case 'BatchNormalization':
      return { reason: 'normalisation: an elementwise scale and shift, no matrix to precondition' };
    default:
      return { reason: `unsupported layer class '${className}' (captured: Dense, Conv2D)` };
  }
}

function describeLayer(layer: Layer, name: string, kind: LayerKind): SecondOrderLayer {
  const fields = layer as unknown as LinearLayerFields;
  const kernel = fields.kernel!;
  const kernelShape = [...kernel.read().shape];
  const outputDim = kernelShape[kernelShape.length - 1]!;
  const inputDim = kernelShape.reduce((product, size) => product * size, 1) / outputDim;
  return {
    name,
    kind,
    kernelName: kernel.name,
    ...(fields.bias === null ? {} : { biasName: fields.bias.name }),
    inputDim,
    outputDim,
    kernelShape,
  };
}

/** The `call` that replaces a captured layer's own: see {@link prepareModel}. */
function capturingCall(
  layer: Layer,
  name: string,
  kind: LayerKind,
  originalCall: CallFunction,
  state: RegistryState,
  covariance: boolean,
  rowClamp: number | undefined,
): CallFunction {
  const fields = layer as unknown as Conv2DFields;
  const patchGeometry = (): PatchGeometry => ({ kernelSize: [fields.kernelSize[0]!, fields.kernelSize[1]!], ...convGeometry(fields) });
  const rank1: StatisticsVectors =
    kind === 'dense'
      ? rowClamp === undefined
        ? { input: (x) => rank1Vector(x), outputGradient: (dy) => rank1Vector(dy) }
        : { input: (x) => clampedRowMean(x, rowClamp, false), outputGradient: (dy) => clampedRowMean(dy, rowClamp, true) }
      : {
          input: (x) => conv2dInputVector(x as tf.Tensor4D, patchGeometry()),
          outputGradient: (dy) => conv2dOutputGradVector(dy as tf.Tensor4D),
        };
  const vectors: StatisticsVectors = !covariance
    ? rank1
    : {
        ...rank1,
        inputCovariance:
          kind === 'dense' ? rowSecondMoment : (x) => conv2dPatchSecondMoment(x as tf.Tensor4D, patchGeometry()),
        outputGradientCovariance: rowSecondMoment,
      };
  const linearPart = kind === 'dense' ? denseLinearPart : conv2dLinearPart;
  return function call(this: Layer, inputs, kwargs) {
    // Without a gradient tape no backward pass can follow: the original call, untouched.
    if (!tf.engine().isTapeOn() || state.released) return originalCall.call(this, inputs, kwargs);
    return tf.tidy(() => {
      fields.invokeCallHook(inputs, kwargs);
      const input = singleInput(name, inputs);
      const preActivation = captureThrough(state.store, name, input, linearPart(fields, input), vectors);
      return fields.activation === null ? preActivation : fields.activation.apply(preActivation);
    });
  };
}

/**
 * Prepares an existing `tf.Sequential` or functional `tf.LayersModel` (nothing is rebuilt) for a
 * second-order optimizer: on every training step, each Dense layer (on `[batch, d]`,
 * `[batch, seq, d]` or any rank ≥ 2) and each channelsLast Conv2D layer records the rank-1
 * statistics of MKOR Algorithm 1, step 1,
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
 * original, passes it through an identity whose custom gradient reads `∂Loss/∂y` on its way
 * back (for fused activations too: `g` is the gradient with respect to the pre-activation
 * output), then applies the layer's activation. Outputs and variable gradients are bit-identical
 * to the unprepared model's. Only `d`-sized vectors are kept between steps.
 *
 * Layers with trainable variables that are not captured go to `firstOrder` with a reason:
 * embeddings, normalisations, other layer classes, channelsFirst or causal Conv2D, layers
 * wider than `maxDim`, layers applied more than once per forward pass (shared layers), and
 * those `include` rejects. Nested models (a model used as a layer) are walked: their layers are
 * named `outer/inner`.
 *
 * Throws when a layer is already prepared by another registry that was not released.
 */
export function prepareModel(model: LayersModel, options: PrepareModelOptions = {}): CaptureRegistry {
  const where = 'prepareModel';
  if (model === null || typeof model !== 'object' || !isContainer(model as unknown as Layer)) {
    throw new TypeError(`${where}: model must be a tf.LayersModel or tf.Sequential, got ${model === null ? 'null' : typeof model}`);
  }
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

  // Applications per forward pass of every layer, through the nesting: a layer used in two
  // places (twice in one container, or in the model and in a nested model) counts both.
  const applications = new Map<Layer, number>();
  const count = (container: ContainerFields, containerApplications: number): void => {
    for (const layer of new Set(container.layers)) {
      const times = containerApplications * applicationsIn(container, layer);
      applications.set(layer, (applications.get(layer) ?? 0) + times);
      if (isContainer(layer)) count(layer, times);
    }
  };
  count(model as unknown as ContainerFields, 1);

  const state = new RegistryState(where);
  const toWrap: { layer: Layer; name: string; kind: LayerKind }[] = [];
  const classified = new Set<Layer>();
  const visit = (container: ContainerFields, prefix: string): void => {
    for (const layer of container.layers) {
      const variables = trainableVariableNames(layer);
      if (variables.length === 0 || classified.has(layer)) continue;
      classified.add(layer);
      const name = `${prefix}${layer.name}`;
      if (isContainer(layer)) {
        visit(layer, `${name}/`);
        continue;
      }
      const firstOrder = (reason: string): void => state.addFirstOrder({ name, variables, reason });
      const classification = classify(layer);
      if ('reason' in classification) {
        firstOrder(classification.reason);
        continue;
      }
      if ((layer as unknown as LinearLayerFields).kernel === null) {
        firstOrder('not built yet: build the model (or call it once) before prepareModel');
        continue;
      }
      const described = describeLayer(layer, name, classification.kind);
      const times = applications.get(layer)!;
      const tooWide = widthReason(described.inputDim, described.outputDim, maxDim);
      if (tooWide !== undefined) {
        firstOrder(tooWide);
      } else if (times !== 1) {
        firstOrder(`shared: applied ${times} times per forward pass, its statistics would mix the applications`);
      } else if (include !== undefined && !include(layer)) {
        firstOrder('excluded by options.include');
      } else {
        if (preparedLayers.has(layer)) {
          throw new Error(
            `${where}: layer '${name}' is already prepared by another registry (e.g. of an optimizer built on this model that was not disposed); ` +
              'dispose() that optimizer (clone what you keep of its getWeights() first) or release() that registry first',
          );
        }
        state.addSecondOrder(described);
        toWrap.push({ layer, name, kind: classification.kind });
      }
    }
  };
  visit(model as unknown as ContainerFields, '');

  const wrapped: WrappedLayer[] = toWrap.map(({ layer, name, kind }) => {
    const ownCall = Object.getOwnPropertyDescriptor(layer, 'call');
    const originalCall = layer.call;
    Object.defineProperty(layer, 'call', {
      value: capturingCall(layer, name, kind, originalCall, state, covariance, rowClamp),
      configurable: true,
      writable: true,
    });
    preparedLayers.add(layer);
    return { layer, ownCall };
  });

  return state.registry(() => {
    for (const { layer, ownCall } of wrapped) {
      if (ownCall === undefined) delete (layer as { call?: CallFunction }).call;
      else Object.defineProperty(layer, 'call', ownCall);
      preparedLayers.delete(layer);
    }
  });
}
