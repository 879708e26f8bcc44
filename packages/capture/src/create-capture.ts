import { checkOneOf, checkRank, checkSpatialPair } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';

import { CONV2D_LAYER_KIND, DENSE_LAYER_KIND } from './default-layer-kinds';
import { secondOrderLayer } from './layer-kind';
import { RegistryState, resolveMaxDim, widthReason } from './registry';
import { type StatisticsVectors, captureThrough, vectorsToRecord } from './statistics-store';
import type { CaptureRegistry, SecondOrderLayer } from './types';

/** Geometry of {@link ModelCapture.conv2d}; sizes are a number or `[height, width]`. */
export interface CaptureConv2dOptions {
  /** Default 1. */
  strides?: number | [number, number];
  /** `'valid'` (default) or `'same'`, as `tf.conv2d`. */
  padding?: 'valid' | 'same';
  /** Default 1. */
  dilationRate?: number | [number, number];
}

/** Options of {@link createCapture}. */
export interface CreateCaptureOptions {
  /** Layers wider than this on either side are computed but not captured (first-order); default 4096. */
  maxDim?: number;
  /**
   * Also record, per step, the full second moments KFAC needs (`statistics(name).covariance`:
   * `(1/n) XᵀX` and `(1/n) Σ dyᵢ dyᵢᵀ`, see `CovarianceStatistics`); for conv2d this forms the
   * unfolded patches during the forward pass. Default false.
   */
  covariance?: boolean;
}

/**
 * A capture for hand-written models: computes tagged layers and captures their statistics,
 * with the reading interface of {@link CaptureRegistry}. Layers register on first use.
 */
export interface ModelCapture extends CaptureRegistry {
  /**
   * The dense layer `y = x W (+ b)` over the last axis of `x` (`[batch, d_in]`,
   * `[batch, seq, d_in]`, ...), with `W = kernel` `[d_in, d_out]` and `b = bias` `[d_out]`;
   * returns the pre-activation `y` (apply the activation yourself). Under a gradient tape it
   * records `a = mean of the rows of x`, and the backward pass commits `g = mean of the rows of
   * ∂Loss/∂y`. Every call with `name` must pass the same variables.
   */
  dense(name: string, x: tf.Tensor, kernel: tf.Variable, bias?: tf.Variable): tf.Tensor;
  /**
   * The NHWC convolution `y = conv2d(x, kernel) (+ b)` of `x` `[batch, H, W, cin]` with
   * `kernel` `[kh, kw, cin, cout]`; returns the pre-activation `y` `[batch, outH, outW, cout]`.
   * Under a gradient tape it records `a = mean of the unfolded input patches` (length
   * `kh·kw·cin`, ordered like the kernel reshaped to `[kh·kw·cin, cout]`), and the backward pass
   * commits `g = mean over batch and positions of ∂Loss/∂y`.
   */
  conv2d(name: string, x: tf.Tensor4D, kernel: tf.Variable, bias?: tf.Variable, options?: CaptureConv2dOptions): tf.Tensor4D;
}

function checkVariable(where: string, name: string, value: unknown, rank: number): tf.Variable {
  if (!(value instanceof tf.Variable)) {
    throw new TypeError(`${where}: ${name} must be a tf.Variable (its name identifies the layer's gradient), got ${value === null ? 'null' : typeof value}`);
  }
  checkRank(where, name, value, rank);
  return value;
}

function checkBias(where: string, bias: unknown, outputDim: number): tf.Variable | undefined {
  if (bias === undefined) return undefined;
  const variable = checkVariable(where, 'bias', bias, 1);
  if (variable.shape[0] !== outputDim) {
    throw new RangeError(`${where}: bias must have shape [${outputDim}] (the kernel's last axis), got [${variable.shape.join(', ')}]`);
  }
  return variable;
}

/**
 * Creates a capture for models written by hand with `tf.*` ops and `tf.Variable`s (no layers
 * API): tag each linear layer by computing it through `capture.dense(...)` or
 * `capture.conv2d(...)`. Under a gradient tape (`optimizer.minimize`, `tf.variableGrads`) each
 * tagged call records the input statistic `a` of MKOR Algorithm 1, step 1, and the backward
 * pass through it commits the pair
 *
 *     a = (1/n) Σᵢ xᵢ,     g = (1/n) Σᵢ ∂Loss/∂yᵢ
 *
 * readable with `statistics(name)`. Without a tape the layer is computed and nothing is recorded.
 * A layer wider than `maxDim` is computed but registered first-order. When one name is called
 * several times in one step, the pair of the last call wins (each backward pass commits only
 * the input statistic of the latest forward pass of its layer).
 *
 * The statistics functions and `gradientCount` of each layer are those of {@link DENSE_LAYER_KIND}
 * and {@link CONV2D_LAYER_KIND}, as for `prepareModel`.
 *
 * `release()` disposes every held tensor; the capture cannot be used afterwards.
 */
export function createCapture(options: CreateCaptureOptions = {}): ModelCapture {
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`createCapture: options must be an object, got ${String(options)}`);
  }
  const maxDim = resolveMaxDim('createCapture', options.maxDim);
  const covariance = options.covariance ?? false;
  if (typeof covariance !== 'boolean') {
    throw new TypeError(`createCapture: covariance must be a boolean, got ${typeof covariance}`);
  }
  const denseVectors = vectorsToRecord(DENSE_LAYER_KIND.statistics(undefined, {}), covariance);
  const state = new RegistryState('createCapture');
  const registry = state.registry(() => undefined);

  /** Every layer seen, by name, captured or not: later calls must match the first. */
  const seen = new Map<string, SecondOrderLayer>();
  const identify = (layer: SecondOrderLayer): string =>
    `${layer.kind} [${layer.kernelShape.join(', ')}] ${[layer.kernelName, layer.biasName ?? '(no bias)'].join(', ')}`;

  /** Registers `layer` on first use of its name, checks it on later ones; returns whether it is captured. */
  const register = (where: string, layer: SecondOrderLayer): boolean => {
    const known = seen.get(layer.name);
    if (known === undefined) {
      const owner = [...seen.values()].find((other) => other.kernelName === layer.kernelName);
      if (owner !== undefined) {
        throw new Error(`${where}: kernel '${layer.kernelName}' already belongs to layer '${owner.name}'; a kernel is one layer's`);
      }
      seen.set(layer.name, layer);
      const tooWide = widthReason(layer.inputDim, layer.outputDim, maxDim);
      if (tooWide === undefined) state.addSecondOrder(layer);
      else {
        const variables = [layer.kernelName, ...(layer.biasName === undefined ? [] : [layer.biasName])];
        state.addFirstOrder({ name: layer.name, variables, reason: tooWide });
      }
    } else if (identify(known) !== identify(layer)) {
      throw new Error(`${where}: layer '${layer.name}' was registered as ${identify(known)}, got ${identify(layer)}`);
    }
    return registry.layerForVariable(layer.kernelName) !== undefined;
  };

  const checkUsable = (where: string, name: unknown): void => {
    if (state.released) throw new Error(`${where}: this capture has been released`);
    if (typeof name !== 'string' || name.length === 0) {
      throw new TypeError(`${where}: name must be a non-empty string, got ${JSON.stringify(name)}`);
    }
  };

  const run = (name: string, captured: boolean, x: tf.Tensor, linear: () => tf.Tensor, vectors: StatisticsVectors): tf.Tensor =>
    tf.tidy(() => {
      const y = linear();
      return captured && tf.engine().isTapeOn() ? captureThrough(state.store, name, x, y, vectors) : y;
    });

  const dense = (name: string, x: tf.Tensor, kernel: tf.Variable, bias?: tf.Variable): tf.Tensor => {
    const where = 'capture.dense';
    checkUsable(where, name);
    checkVariable(where, 'kernel', kernel, 2);
    const [inputDim, outputDim] = kernel.shape as [number, number];
    if (!(x instanceof tf.Tensor) || x.isDisposed || x.rank < 2 || x.shape[x.rank - 1] !== inputDim) {
      const got = x instanceof tf.Tensor ? `shape [${x.shape.join(', ')}]${x.isDisposed ? ' (disposed)' : ''}` : typeof x;
      throw new RangeError(`${where}: x must be a live tensor of rank ≥ 2 whose last axis is ${inputDim} (the kernel's rows), got ${got}`);
    }
    const biasVariable = checkBias(where, bias, outputDim);
    const layer = secondOrderLayer(name, DENSE_LAYER_KIND, {
      kernelName: kernel.name,
      biasName: biasVariable?.name,
      inputDim,
      outputDim,
      kernelShape: [inputDim, outputDim],
    });
    const captured = register(where, layer);
    return run(name, captured, x, () => {
      const rows = x.rank === 2 ? x : tf.reshape(x, [-1, inputDim]);
      const product = tf.matMul(rows, kernel);
      const withBias = biasVariable === undefined ? product : tf.add(product, biasVariable);
      return x.rank === 2 ? withBias : tf.reshape(withBias, [...x.shape.slice(0, -1), outputDim]);
    }, denseVectors);
  };

  const conv2d = (name: string, x: tf.Tensor4D, kernel: tf.Variable, bias?: tf.Variable, convOptions: CaptureConv2dOptions = {}): tf.Tensor4D => {
    const where = 'capture.conv2d';
    checkUsable(where, name);
    const [kh, kw, inChannels, outChannels] = checkVariable(where, 'kernel', kernel, 4).shape as [number, number, number, number];
    const [, , , channels] = checkRank(where, 'x', x, 4) as [number, number, number, number];
    if (channels !== inChannels) {
      throw new RangeError(`${where}: x must have ${inChannels} channels (kernel [${kernel.shape.join(', ')}]), got shape [${x.shape.join(', ')}]`);
    }
    const biasVariable = checkBias(where, bias, outChannels);
    if (convOptions === null || typeof convOptions !== 'object') {
      throw new TypeError(`${where}: options must be an object, got ${String(convOptions)}`);
    }
    const strides = checkSpatialPair(where, 'strides', convOptions.strides ?? 1);
    const dilationRate = checkSpatialPair(where, 'dilationRate', convOptions.dilationRate ?? 1);
    const padding = checkOneOf(where, 'padding', convOptions.padding ?? 'valid', ['valid', 'same'] as const);
    const layer = secondOrderLayer(name, CONV2D_LAYER_KIND, {
      kernelName: kernel.name,
      biasName: biasVariable?.name,
      inputDim: kh * kw * inChannels,
      outputDim: outChannels,
      kernelShape: [kh, kw, inChannels, outChannels],
    });
    const captured = register(where, layer);
    const geometry = { kernelSize: [kh, kw], strides, padding, dilationRate } as const;
    const vectors = vectorsToRecord(CONV2D_LAYER_KIND.statistics(geometry, {}), covariance);
    return run(name, captured, x, () => {
      const product = tf.conv2d(x, kernel as tf.Variable<tf.Rank.R4>, strides, padding, 'NHWC', dilationRate);
      return biasVariable === undefined ? product : tf.add(product, biasVariable);
    }, vectors) as tf.Tensor4D;
  };

  return { ...registry, dense, conv2d };
}
