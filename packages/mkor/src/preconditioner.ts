import { type TensorMap, type Transform, checkLayerCoverage, checkNumber, finiteFlag } from '@mkor/core';
import { roundToHalf } from '@mkor/fp16';
import { rescaleFactor, rescaleFactorSummedNorms, rescaleToNorm, rescaleToSummedNorms } from '@mkor/grad-rescale';
import { stabilizeDeferred } from '@mkor/norm-stabilizer';
import { updateInverseFactor } from '@mkor/sherman-morrison';
import * as tf from '@tensorflow/tfjs-core';

import { type MkorOptions, type ResolvedMkorOptions, resolveMkorOptions } from './options';

/**
 * A layer MKOR preconditions: which variables hold its kernel and bias and how the kernel
 * reads as a matrix. `@mkor/capture`'s `SecondOrderLayer` has this shape.
 */
export interface PreconditionedLayer {
  readonly name: string;
  /** `'conv2d'` changes how `gradientScale: 'sum'` counts (see {@link outputVector}); default dense. */
  readonly kind?: 'dense' | 'conv2d';
  /** Variable name of the kernel, as in the gradient map. */
  readonly kernelName: string;
  /** Variable name of the bias, when the layer has one (folded into the input factor). */
  readonly biasName?: string;
  /** Rows of the kernel as a matrix: d_in (dense) or kh·kw·cin (conv2d). */
  readonly inputDim: number;
  /** Columns of the kernel as a matrix: d_out, or cout. */
  readonly outputDim: number;
  /** The kernel's own shape; its gradient is reshaped to `[inputDim, outputDim]` and back. */
  readonly kernelShape: readonly number[];
}

/**
 * The rank-1 statistics of one layer on one step (`@mkor/capture`'s `LayerStatistics` has this
 * shape): `a` the mean of the input rows, `g` the mean of the output-gradient rows, `rows` the
 * number of rows averaged, `step` a counter that changes with each new pair.
 */
export interface Rank1Statistics {
  readonly a: tf.Tensor1D;
  readonly g: tf.Tensor1D;
  readonly rows: number;
  /** The batch size (leading dimension); used for conv2d layers by `gradientScale: 'sum'`. */
  readonly samples?: number;
  readonly step: number;
}

/** The per-layer part of the state: the two inverse factors and the reference reset flags. */
export interface LayerFactorState {
  /** `R⁻¹`, the inverse input factor, `[d_in(+1), d_in(+1)]`. */
  readonly inputInverse: tf.Tensor2D;
  /** `L⁻¹`, the inverse output-gradient factor, `[d_out, d_out]`. */
  readonly outputInverse: tf.Tensor2D;
  /** Reference preset: reset `R⁻¹` to I at the next factor update (true before the first). */
  readonly resetInput: boolean;
  /** Reference preset: reset `L⁻¹` to I at the next factor update (true before the first). */
  readonly resetOutput: boolean;
  /** The `step` of the statistics last folded in (-1: none), so stale statistics are not reused. */
  readonly statisticsStep: number;
}

/** What happened on the latest step, for logging. */
export interface MkorStepMetrics {
  readonly step: number;
  /** Whether the factors were updated on this step. */
  readonly factorUpdate: boolean;
  /** Layers whose stabiliser fired on this step. */
  readonly stabilized: readonly string[];
  /** Factors reset to I on this step (non-finite after the update, or the reference rule). */
  readonly resets: readonly string[];
  /**
   * The rescale factor ν of each layer (step 6); not finite where the raw gradient was used
   * instead (see `@mkor/grad-rescale`). Empty with `rescale: 'none'`.
   */
  readonly rescaleFactors: Readonly<Record<string, number>>;
  /** Milliseconds spent refreshing the factors on this step (0 between refreshes; exact on synchronous backends such as wasm and cpu). */
  readonly factorMs: number;
  /** Milliseconds spent preconditioning, rescaling and reading back the metrics (exact on synchronous backends). */
  readonly preconditionMs: number;
}

/** The state of {@link mkorPreconditioner}. */
export interface MkorPreconditionerState {
  readonly step: number;
  readonly layers: Readonly<Record<string, LayerFactorState>>;
  /** Totals since the start, for monitoring. */
  readonly totals: { readonly factorUpdates: number; readonly stabilizerFirings: number; readonly factorResets: number };
  readonly metrics: MkorStepMetrics | null;
}

/** The statistics a step reads from `context.extras.statistics`, keyed by layer name. */
export type StatisticsByLayer = Readonly<Record<string, Rank1Statistics | undefined>>;

function inputSize(layer: PreconditionedLayer): number {
  return layer.inputDim + (layer.biasName === undefined ? 0 : 1);
}

function checkLayer(layer: PreconditionedLayer): void {
  const where = `mkorPreconditioner(layer '${layer.name}')`;
  checkNumber(where, 'inputDim', layer.inputDim, { min: 1, integer: true });
  checkNumber(where, 'outputDim', layer.outputDim, { min: 1, integer: true });
  const size = layer.kernelShape.reduce((a, b) => a * b, 1);
  if (size !== layer.inputDim * layer.outputDim) {
    throw new RangeError(
      `${where}: kernelShape [${layer.kernelShape.join(', ')}] does not hold ${layer.inputDim}×${layer.outputDim} entries`,
    );
  }
}

function checkStatistics(layer: PreconditionedLayer, s: Rank1Statistics): void {
  const where = `mkorPreconditioner(layer '${layer.name}')`;
  if (s.a.shape[0] !== layer.inputDim || s.g.shape[0] !== layer.outputDim) {
    throw new RangeError(
      `${where}: statistics have a of length ${s.a.shape[0]} and g of length ${s.g.shape[0]}, ` +
        `expected ${layer.inputDim} and ${layer.outputDim}`,
    );
  }
}

/** The vector folded into `R⁻¹`: `a`, with a constant 1 appended when the bias is folded in. */
function inputVector(layer: PreconditionedLayer, s: Rank1Statistics): tf.Tensor1D {
  return layer.biasName === undefined ? s.a : tf.concat([s.a, tf.ones([1])]);
}

/**
 * The vector folded into `L⁻¹`: `g`, or with `gradientScale: 'sum'` n·g, n counted as the authors'
 * code does to undo a mean-reduced loss: the rows for a dense layer (batch·seq for 3-D inputs),
 * the batch size for a conv2d layer (the loss averages over samples, not positions).
 */
function outputVector(layer: PreconditionedLayer, options: ResolvedMkorOptions, s: Rank1Statistics): tf.Tensor1D {
  if (options.gradientScale === 'mean') return s.g;
  const count = layer.kind === 'conv2d' && s.samples !== undefined ? s.samples : s.rows;
  return tf.mul(s.g, count);
}

/**
 * One factor update for every layer with fresh statistics: stabilise (eq. 7/8), then the
 * Sherman–Morrison update (eq. 5/6) of both inverse factors; a factor that comes out non-finite is
 * reset to I. The reference preset follows the authors' code instead: first all input factors,
 * then all output factors, each reset to I when flagged, and a layer flagged for reset when an
 * entry of either factor exceeds the threshold.
 */
function refreshFactors(
  layers: readonly PreconditionedLayer[],
  state: MkorPreconditionerState,
  statistics: StatisticsByLayer,
  options: ResolvedMkorOptions,
): { layers: Record<string, LayerFactorState>; stabilized: string[]; resets: string[] } {
  const next: Record<string, LayerFactorState> = { ...state.layers };
  const stabilized: string[] = [];
  const resets: string[] = [];
  const fresh = layers.filter((layer) => {
    const s = statistics[layer.name];
    if (s === undefined || s.step === state.layers[layer.name]?.statisticsStep) return false;
    checkStatistics(layer, s);
    return true;
  });
  const store = (x: tf.Tensor2D): tf.Tensor2D =>
    options.factorPrecision === 'float16' ? (roundToHalf(x, 'float16') as tf.Tensor2D) : x;
  const update = (inverse: tf.Tensor2D, v: tf.Tensor1D): { inverse: tf.Tensor2D; fired: tf.Tensor | null } => {
    let fired: tf.Tensor | null = null;
    let start = inverse;
    if (options.stabilizer !== false) {
      const s = stabilizeDeferred(inverse, { ...options.stabilizer, mode: 'blend' });
      start = s.inverse;
      fired = s.fired;
    }
    return { inverse: store(updateInverseFactor(start, v, { form: options.form, gamma: options.gamma, checkFinite: false })), fired };
  };

  if (options.resetAboveMaxEntry === false) {
    const flags: tf.Tensor[] = [];
    const candidates = fresh.map((layer) => {
      const s = statistics[layer.name] as Rank1Statistics;
      const old = state.layers[layer.name] as LayerFactorState;
      const input = update(old.inputInverse, inputVector(layer, s));
      const output = update(old.outputInverse, outputVector(layer, options, s));
      flags.push(
        input.fired ?? tf.scalar(false, 'bool'),
        output.fired ?? tf.scalar(false, 'bool'),
        finiteFlag([input.inverse]),
        finiteFlag([output.inverse]),
      );
      return { layer, s, input: input.inverse, output: output.inverse };
    });
    const read = flags.length === 0 ? new Int32Array(0) : (tf.stack(flags.map((f) => tf.cast(f, 'int32'))).dataSync() as Int32Array);
    candidates.forEach(({ layer, s, input, output }, i) => {
      const [firedIn, firedOut, finiteIn, finiteOut] = Array.from(read.subarray(4 * i, 4 * i + 4));
      if (firedIn || firedOut) stabilized.push(layer.name);
      if (!finiteIn || !finiteOut) resets.push(layer.name);
      next[layer.name] = {
        ...(next[layer.name] as LayerFactorState),
        inputInverse: finiteIn ? input : tf.eye(inputSize(layer)),
        outputInverse: finiteOut ? output : tf.eye(layer.outputDim),
        statisticsStep: s.step,
      };
    });
    return { layers: next, stabilized, resets };
  }

  // The reference preset: input factors of every layer first, then output factors.
  const threshold = options.resetAboveMaxEntry;
  for (const side of ['input', 'output'] as const) {
    const maxima: { layer: PreconditionedLayer; max: tf.Tensor }[] = [];
    for (const layer of fresh) {
      const s = statistics[layer.name] as Rank1Statistics;
      const current = next[layer.name] as LayerFactorState;
      const resetFlag = side === 'input' ? current.resetInput : current.resetOutput;
      const inverse = side === 'input' ? current.inputInverse : current.outputInverse;
      let updated: tf.Tensor2D;
      if (resetFlag) {
        updated = tf.eye(side === 'input' ? inputSize(layer) : layer.outputDim);
        resets.push(`${layer.name}/${side}`);
      } else {
        const v = side === 'input' ? inputVector(layer, s) : outputVector(layer, options, s);
        updated = store(updateInverseFactor(inverse, v, { form: options.form, gamma: options.gamma, checkFinite: false }));
        maxima.push({ layer, max: tf.max(tf.abs(updated)) });
      }
      next[layer.name] = {
        ...current,
        ...(side === 'input' ? { inputInverse: updated, resetInput: false } : { outputInverse: updated, resetOutput: false }),
        statisticsStep: s.step,
      };
    }
    if (maxima.length > 0) {
      const values = tf.stack(maxima.map((m) => m.max)).dataSync();
      maxima.forEach(({ layer }, i) => {
        const value = values[i] as number;
        // NaN compares false: a non-finite factor is flagged as well.
        if (!(value <= threshold)) {
          next[layer.name] = { ...(next[layer.name] as LayerFactorState), resetInput: true, resetOutput: true };
        }
      });
    }
  }
  return { layers: next, stabilized, resets };
}

/**
 * The MKOR preconditioner (Algorithm 1, steps 3–6) as a transform: for every second-order layer
 * it keeps the inverse factors `L⁻¹` (output side) and `R⁻¹` (input side, bias folded in), updates
 * them every `factorUpdateInterval` steps from the rank-1 statistics with the norm-based stabiliser
 * (eq. 7/8) and a Sherman–Morrison step (eq. 5/6), and turns each layer's gradient into
 * `ΔW = L⁻¹ ∇W R⁻¹` — in tfjs's `[d_in, d_out]` kernel layout `R⁻¹ ∇K L⁻¹` — rescaled to the
 * gradient's norm (step 6). Other variables pass through untouched. Chain a first-order transform
 * after it (step 7); `mkor()` does.
 *
 * `layers` is a list, or a function called once at the first `init` (for captures whose layers
 * register on first use, like `createCapture`). Statistics are read from
 * `context.extras.statistics` ({@link StatisticsByLayer}); a layer without fresh statistics keeps
 * its factors. Each factor update costs one read-back of a few
 * flags; with `collectMetrics` each step reads back the rescale factors.
 */
export function mkorPreconditioner(
  layers: readonly PreconditionedLayer[] | (() => readonly PreconditionedLayer[]),
  options: MkorOptions = {},
): Transform<MkorPreconditionerState> {
  const resolved = resolveMkorOptions(options);
  const reference = resolved.resetAboveMaxEntry !== false;
  const validate = (list: readonly PreconditionedLayer[]): readonly PreconditionedLayer[] => {
    if (!Array.isArray(list)) throw new TypeError('mkorPreconditioner: layers must be an array of layers');
    list.forEach(checkLayer);
    const names = new Set<string>();
    for (const layer of list) {
      if (names.has(layer.name)) throw new RangeError(`mkorPreconditioner: layer '${layer.name}' is listed twice`);
      names.add(layer.name);
    }
    return list;
  };
  // A list is checked now; a function is called (and checked) once, at the first init, so layers
  // that register on first use (createCapture) are known by then.
  let known: readonly PreconditionedLayer[] | undefined = typeof layers === 'function' ? undefined : validate(layers);
  const layersOf = (): readonly PreconditionedLayer[] => {
    known ??= validate((layers as () => readonly PreconditionedLayer[])());
    return known;
  };

  return {
    init: () => ({
      step: 0,
      layers: Object.fromEntries(
        layersOf().map((layer) => [
          layer.name,
          {
            inputInverse: tf.eye(inputSize(layer)),
            outputInverse: tf.eye(layer.outputDim),
            resetInput: reference,
            resetOutput: reference,
            statisticsStep: -1,
          },
        ]),
      ),
      totals: { factorUpdates: 0, stabilizerFirings: 0, factorResets: 0 },
      metrics: null,
    }),

    update: (gradients: TensorMap, state, context) => {
      const layers = layersOf();
      const statistics = (context?.extras?.statistics ?? {}) as StatisticsByLayer;
      checkLayerCoverage('mkorPreconditioner', layers.map((layer) => layer.name), state.layers, statistics);
      const isFactorStep =
        state.step % resolved.factorUpdateInterval === 0 || state.step < resolved.warmupSteps;

      const factorStart = performance.now();
      let factors: Readonly<Record<string, LayerFactorState>> = state.layers;
      let stabilized: string[] = [];
      let resets: string[] = [];
      if (isFactorStep) {
        ({ layers: factors, stabilized, resets } = refreshFactors(layers, state, statistics, resolved));
      }
      const factorMs = performance.now() - factorStart;

      const preconditionStart = performance.now();
      const updates: Record<string, tf.Tensor> = { ...gradients };
      const rescaleFactors: tf.Tensor[] = [];
      for (const layer of layers) {
        const kernelGrad = gradients[layer.kernelName];
        if (kernelGrad === undefined) continue;
        const biasGrad = layer.biasName === undefined ? undefined : gradients[layer.biasName];
        if (layer.biasName !== undefined && biasGrad === undefined) {
          throw new RangeError(`mkorPreconditioner: layer '${layer.name}' has a kernel gradient but no bias gradient`);
        }
        const f = factors[layer.name] as LayerFactorState;
        const kernelMatrix = tf.reshape(kernelGrad, [layer.inputDim, layer.outputDim]);
        const biasRow = biasGrad === undefined ? undefined : tf.reshape(biasGrad, [1, layer.outputDim]);
        const gradient = biasRow === undefined ? kernelMatrix : tf.concat([kernelMatrix, biasRow], 0);
        const preconditioned = tf.matMul(tf.matMul(f.inputInverse, gradient), f.outputInverse);
        let kernelUpdate: tf.Tensor;
        let biasUpdate: tf.Tensor | undefined;
        if (resolved.rescale === 'summed-norms') {
          const rawKernel = tf.slice(preconditioned, [0, 0], [layer.inputDim, layer.outputDim]);
          const rawBias = biasRow === undefined ? undefined : tf.slice(preconditioned, [layer.inputDim, 0], [1, layer.outputDim]);
          const rescaled = rescaleToSummedNorms(
            { weight: rawKernel, ...(rawBias === undefined ? {} : { bias: rawBias }) },
            { weight: kernelMatrix, ...(biasRow === undefined ? {} : { bias: biasRow }) },
          );
          kernelUpdate = rescaled.weight;
          biasUpdate = rescaled.bias;
          if (resolved.collectMetrics) {
            rescaleFactors.push(
              rescaleFactorSummedNorms(
                { weight: rawKernel, ...(rawBias === undefined ? {} : { bias: rawBias }) },
                { weight: kernelMatrix, ...(biasRow === undefined ? {} : { bias: biasRow }) },
              ),
            );
          }
        } else {
          const rescaled = resolved.rescale === 'frobenius' ? rescaleToNorm(preconditioned, gradient) : preconditioned;
          if (resolved.collectMetrics && resolved.rescale === 'frobenius') rescaleFactors.push(rescaleFactor(preconditioned, gradient));
          kernelUpdate = tf.slice(rescaled, [0, 0], [layer.inputDim, layer.outputDim]);
          biasUpdate = biasRow === undefined ? undefined : tf.slice(rescaled, [layer.inputDim, 0], [1, layer.outputDim]);
        }
        updates[layer.kernelName] = tf.reshape(kernelUpdate, kernelGrad.shape);
        if (layer.biasName !== undefined && biasUpdate !== undefined && biasGrad !== undefined) {
          updates[layer.biasName] = tf.reshape(biasUpdate, biasGrad.shape);
        }
      }
      const factorsRead = rescaleFactors.length > 0 ? tf.stack(rescaleFactors).dataSync() : new Float32Array(0);
      const preconditionMs = performance.now() - preconditionStart;

      const used = layers.filter((layer) => gradients[layer.kernelName] !== undefined);
      const metrics: MkorStepMetrics | null = resolved.collectMetrics
        ? {
            step: state.step,
            factorUpdate: isFactorStep,
            stabilized,
            resets,
            rescaleFactors: Object.fromEntries(
              factorsRead.length === 0 ? [] : used.map((layer, i) => [layer.name, factorsRead[i] as number]),
            ),
            factorMs,
            preconditionMs,
          }
        : null;
      return {
        updates,
        state: {
          step: state.step + 1,
          layers: factors,
          totals: {
            factorUpdates: state.totals.factorUpdates + (isFactorStep ? 1 : 0),
            stabilizerFirings: state.totals.stabilizerFirings + stabilized.length,
            factorResets: state.totals.factorResets + resets.length,
          },
          metrics,
        },
      };
    },
  };
}
