import type * as tf from '@tensorflow/tfjs-core';
import type { LayersModel, LayerVariable } from '@tensorflow/tfjs-layers';

import type { SecondOrderLayer } from './types';

/** A tfjs-layers layer (any class), as `model.layers` lists it. */
export type Layer = LayersModel['layers'][number];

/**
 * What `n` a consumer multiplies the output-gradient statistic `g` by to undo a mean-reduced
 * loss's `1/batch` (the authors' `'sum'` scale): `'rows'`, the rows averaged (`batch`, or
 * `batch·seq` for `[batch, seq, d]` inputs: dense layers), or `'samples'`, the batch size
 * (conv2d layers, whose loss averages over samples, not over output positions).
 */
export type GradientCount = 'rows' | 'samples';

/** A layer's variables and its kernel seen as a matrix, as a {@link LayerKindHandler} describes them. */
export interface LinearLayerDescription {
  /** The kernel variable, whose gradient is preconditioned. */
  readonly kernel: LayerVariable;
  /** The bias variable (`[outputDim]`), or null for a layer without one. */
  readonly bias: LayerVariable | null;
  /** Rows of the kernel as the matrix `W` of `y = x W (+ b)`: `d_in`, or `kh·kw·cin` for conv2d. */
  readonly inputDim: number;
  /** Columns of that matrix: `d_out`, or `cout` for conv2d. `inputDim · outputDim` is the kernel's size. */
  readonly outputDim: number;
}

/**
 * The functions that compute a layer's statistics (MKOR Algorithm 1, step 1, and KFAC's
 * second moments) over the `n` rows of one step, from the layer's input `x` and from
 * `dy = ∂Loss/∂y`, the gradient of its pre-activation output:
 *
 *     a = (1/n) Σᵢ xᵢ            G = (1/n) Σᵢ dyᵢ dyᵢᵀ
 *     g = (1/n) Σᵢ dyᵢ           A = (1/n) Σᵢ xᵢ xᵢᵀ
 *
 * Each returns a new tensor and leaves its argument alone. The covariances are computed only
 * when the capture records them (`covariance: true`).
 */
export interface StatisticsFunctions {
  /** `a`, length `inputDim`. */
  input(x: tf.Tensor): tf.Tensor1D;
  /** `g`, length `outputDim`. */
  outputGradient(dy: tf.Tensor): tf.Tensor1D;
  /** `A`, `[inputDim, inputDim]`. */
  inputCovariance(x: tf.Tensor): tf.Tensor2D;
  /** `G`, `[outputDim, outputDim]`. */
  outputGradientCovariance(dy: tf.Tensor): tf.Tensor2D;
}

/** Options a {@link LayerKindHandler}'s statistics honour (those that do not apply to a kind are ignored by it). */
export interface StatisticsOptions {
  /** Clamp every row to ±`rowClamp` before averaging (see `PrepareModelOptions.rowClamp`); absent: no clamp. */
  readonly rowClamp?: number;
}

/**
 * How one kind of layer is captured: which tfjs-layers classes it covers, how it describes such a
 * layer, how `prepareModel` recomputes the layer's linear part `y = x W (+ b)` in its place, and
 * which functions compute the layer's statistics. `prepareModel` and `createCapture` read
 * everything kind-specific from these entries ({@link DEFAULT_LAYER_KINDS} holds `dense` and
 * `conv2d`); supporting another layer kind is one more entry in `PrepareModelOptions.layerKinds`.
 *
 * `Geometry` is what the statistics depend on besides the tensors (conv2d: kernel size, strides,
 * padding and dilation; dense: nothing). Methods receive the layer as tfjs-layers lists it: read
 * its fields with a cast to the layer's class.
 */
export interface LayerKindHandler<Geometry = unknown> {
  /** The kind's name, reported as `SecondOrderLayer.kind` and by `describe()`: `'dense'`, `'conv2d'`, … */
  readonly kind: string;
  /** The layer classes of this kind, by `layer.getClassName()` (a subclass has its own class name). */
  readonly classNames: readonly string[];
  /** What a consumer counts to undo a mean-reduced loss (see {@link GradientCount}); copied to every layer of this kind. */
  readonly gradientCount: GradientCount;
  /**
   * Why this layer, of one of {@link classNames}, has a configuration the kind does not capture
   * (e.g. a channelsFirst Conv2D), or undefined when it does. Omitted: every layer is captured.
   */
  unsupported?(layer: Layer): string | undefined;
  /** The layer's kernel, bias and matrix shape; undefined when the layer is not built yet (no kernel). */
  describe(layer: Layer): LinearLayerDescription | undefined;
  /** The layer's {@link Geometry}, read once when the model is prepared. Omitted: `undefined`. */
  geometry?(layer: Layer): Geometry;
  /**
   * The layer's pre-activation output `y = x W (+ b)` for its single input `x`, computed by the
   * kernels the layer's own `call` runs under a gradient tape (so that outputs and gradients stay
   * bit-identical to the unprepared layer's). Runs inside a `tf.tidy`.
   */
  linearPart(layer: Layer, input: tf.Tensor): tf.Tensor;
  /** What the layer's `call` applies after the linear part (its activation). Omitted: nothing. */
  activation?(layer: Layer, preActivation: tf.Tensor): tf.Tensor;
  /** The functions computing the statistics of a layer of this geometry (see {@link StatisticsFunctions}). */
  statistics(geometry: Geometry, options: StatisticsOptions): StatisticsFunctions;
}

const REQUIRED_METHODS = ['describe', 'linearPart', 'statistics'] as const;
const OPTIONAL_METHODS = ['unsupported', 'geometry', 'activation'] as const;
const STATISTICS_FUNCTIONS = ['input', 'outputGradient', 'inputCovariance', 'outputGradientCovariance'] as const;

function described(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}

/**
 * Checks a table of layer kinds (an array of {@link LayerKindHandler}, each kind and class name
 * at most once), naming `where` and the entry at fault; returns the table.
 */
export function checkLayerKinds(where: string, kinds: unknown): readonly LayerKindHandler[] {
  if (!Array.isArray(kinds)) {
    throw new TypeError(`${where}: layerKinds must be an array of layer kind handlers (e.g. [...DEFAULT_LAYER_KINDS, myKind]), got ${described(kinds)}`);
  }
  const kindNames = new Map<string, number>();
  const classOwners = new Map<string, string>();
  kinds.forEach((entry: unknown, index) => {
    const at = `${where}: layerKinds[${index}]`;
    if (entry === null || typeof entry !== 'object') throw new TypeError(`${at} must be a layer kind handler object, got ${described(entry)}`);
    const handler = entry as Record<string, unknown>;
    if (typeof handler.kind !== 'string' || handler.kind.length === 0) {
      throw new TypeError(`${at}.kind must be a non-empty string, got ${JSON.stringify(handler.kind) ?? 'undefined'}`);
    }
    const kind = handler.kind;
    const named = `${at} (kind '${kind}')`;
    if (kindNames.has(kind)) throw new Error(`${named}: kind '${kind}' is also layerKinds[${kindNames.get(kind)}]'s`);
    kindNames.set(kind, index);
    const classNames = handler.classNames;
    if (!Array.isArray(classNames) || classNames.length === 0 || !classNames.every((name) => typeof name === 'string' && name.length > 0)) {
      throw new TypeError(`${named}.classNames must be a non-empty array of layer class names (layer.getClassName()), got ${JSON.stringify(classNames) ?? 'undefined'}`);
    }
    for (const className of classNames as string[]) {
      const owner = classOwners.get(className);
      if (owner !== undefined) throw new Error(`${named}.classNames: class '${className}' is already kind '${owner}'s; a class has one kind`);
      classOwners.set(className, kind);
    }
    if (handler.gradientCount !== 'rows' && handler.gradientCount !== 'samples') {
      throw new TypeError(`${named}.gradientCount must be 'rows' or 'samples', got ${JSON.stringify(handler.gradientCount) ?? 'undefined'}`);
    }
    for (const method of REQUIRED_METHODS) {
      if (typeof handler[method] !== 'function') throw new TypeError(`${named}.${method} must be a function, got ${described(handler[method])}`);
    }
    for (const method of OPTIONAL_METHODS) {
      if (handler[method] !== undefined && typeof handler[method] !== 'function') {
        throw new TypeError(`${named}.${method} must be a function when given, got ${described(handler[method])}`);
      }
    }
  });
  return kinds as readonly LayerKindHandler[];
}

/** The handler's statistics functions for `geometry`, checked to be the four functions, naming `where`. */
export function statisticsFunctionsOf<Geometry>(
  where: string,
  handler: LayerKindHandler<Geometry>,
  geometry: Geometry,
  options: StatisticsOptions,
): StatisticsFunctions {
  const functions: unknown = handler.statistics(geometry, options);
  const missing =
    functions === null || typeof functions !== 'object'
      ? [...STATISTICS_FUNCTIONS]
      : STATISTICS_FUNCTIONS.filter((name) => typeof (functions as Record<string, unknown>)[name] !== 'function');
  if (missing.length > 0) {
    throw new TypeError(
      `${where}: layer kind '${handler.kind}': statistics(geometry, options) must return the functions ${STATISTICS_FUNCTIONS.join(', ')}; ` +
        `missing ${missing.join(', ')}`,
    );
  }
  return functions as StatisticsFunctions;
}

/** The {@link SecondOrderLayer} of a layer of this kind named `name`. */
export function secondOrderLayer(name: string, handler: Pick<LayerKindHandler, 'kind' | 'gradientCount'>, description: {
  readonly kernelName: string;
  readonly biasName: string | undefined;
  readonly inputDim: number;
  readonly outputDim: number;
  readonly kernelShape: readonly number[];
}): SecondOrderLayer {
  const { kernelName, biasName, inputDim, outputDim, kernelShape } = description;
  return {
    name,
    kind: handler.kind,
    gradientCount: handler.gradientCount,
    kernelName,
    ...(biasName === undefined ? {} : { biasName }),
    inputDim,
    outputDim,
    kernelShape: [...kernelShape],
  };
}
