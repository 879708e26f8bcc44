import type { LayerStatistics, SecondOrderLayer, StatisticsByLayer } from '@mkor/capture';
import { type TensorMap, type Transform, checkLayerCoverage, checkNumber, finiteFlag } from '@mkor/core';
import { dampedInverse } from '@mkor/linalg';
import * as tf from '@tensorflow/tfjs-core';

import type { LayerSource, ResolvedSecondOrderOptions, SecondOrderOptions, SecondOrderStepMetrics } from './second-order-parts';
import { checkStatistics, foldedInputSize, lazyLayers, outputGradientCount, preconditionLayers, resolveSecondOrderOptions } from './second-order-parts';

/** Hyperparameters of the KFAC preconditioner; every field has a default (KAISA's). */
export interface KfacOptions extends SecondOrderOptions {
  /** Factor momentum γ ∈ (0, 1): `A ← γA + (1−γ)E[ããᵀ]`, `G ← γG + (1−γ)E[ggᵀ]`. Default 0.95. */
  readonly gamma?: number;
  /** Damping λ ≥ 0 added to each factor before inverting: `(A + λI)⁻¹`, `(G + λI)⁻¹`. Default 0.001. */
  readonly damping?: number;
  /** Fold new covariances into the factors every this many steps. Default 1. */
  readonly factorUpdateInterval?: number;
  /** Recompute the damped inverses every this many steps (stale in between). Default 10. */
  readonly inverseInterval?: number;
  /**
   * Scale of the output-gradient covariance: `'mean'` as captured, or `'sum'` (default): times
   * `count²`, `count` the rows (dense) or the batch size (conv2d), which undoes a mean-reduced
   * loss's `1/batch` (as MKOR's `gradientScale`).
   */
  readonly gradientScale?: 'mean' | 'sum';
  /** Read back the scale factors each step for {@link KfacStepMetrics}. Default true. */
  readonly collectMetrics?: boolean;
}

/** {@link KfacOptions} checked, with defaults. */
export interface ResolvedKfacOptions extends ResolvedSecondOrderOptions {
  readonly damping: number;
  readonly factorUpdateInterval: number;
  readonly inverseInterval: number;
}

/** Checks KFAC's options and fills in the defaults; errors name `where`. */
export function resolveKfacOptions(options: KfacOptions = {}, where = 'kfacPreconditioner'): ResolvedKfacOptions {
  return {
    ...resolveSecondOrderOptions(where, options),
    damping: checkNumber(where, 'damping', options.damping ?? 0.001, { min: 0 }),
    factorUpdateInterval: checkNumber(where, 'factorUpdateInterval', options.factorUpdateInterval ?? 1, { min: 1, integer: true }),
    inverseInterval: checkNumber(where, 'inverseInterval', options.inverseInterval ?? 10, { min: 1, integer: true }),
  };
}

/** The per-layer part of KFAC's state. */
export interface KfacLayerState {
  /** `A`, the EMA of the input covariance with the bias folded in, `[d_in(+1), d_in(+1)]`. */
  readonly inputFactor: tf.Tensor2D;
  /** `G`, the EMA of the output-gradient covariance, `[d_out, d_out]`. */
  readonly outputFactor: tf.Tensor2D;
  /** `(A + λI)⁻¹` as of the latest successful inversion (I before the first). */
  readonly inputInverse: tf.Tensor2D;
  /** `(G + λI)⁻¹` as of the latest successful inversion (I before the first). */
  readonly outputInverse: tf.Tensor2D;
  /** The `step` of the statistics last folded in (−1: none yet, the factors are placeholders). */
  readonly statisticsStep: number;
}

/**
 * What happened on the latest step, for logging: the step, the scale factors and the timings of
 * {@link SecondOrderStepMetrics} (`factorMs`: folding the covariances into the factors and, on
 * the steps that do so, recomputing the damped inverses; `preconditionMs`: the two products of
 * preconditioning, the KL-clip or rescale and the read-back), and what follows.
 */
export interface KfacStepMetrics extends SecondOrderStepMetrics {
  /** Whether the covariances were folded into the factors on this step. */
  readonly factorUpdate: boolean;
  /**
   * Whether this was a step of the `inverseInterval` schedule, on which every damped inverse is
   * recomputed (a layer's first factors are inverted when they arrive, on any step).
   */
  readonly inverseUpdate: boolean;
  /** Factors (`layer/input`, `layer/output`) whose inversion failed (not positive definite): the previous inverse was kept. */
  readonly failedInversions: readonly string[];
  /** Layers whose new factors came out non-finite and were not folded in. */
  readonly rejectedFactors: readonly string[];
}

/** The state of {@link kfacPreconditioner}. */
export interface KfacPreconditionerState {
  readonly step: number;
  readonly layers: Readonly<Record<string, KfacLayerState>>;
  /** Totals since the start, for monitoring. */
  readonly totals: {
    readonly factorUpdates: number;
    readonly inverseUpdates: number;
    readonly failedInversions: number;
    readonly rejectedFactors: number;
  };
  readonly metrics: KfacStepMetrics | null;
}

const WHERE = 'kfacPreconditioner';

/**
 * The input covariance with the bias folded in: `[[C, a], [aᵀ, 1]]` (the second moment of the
 * rows `[x, 1]`), or `C` for a layer without bias.
 */
function foldedInputCovariance(layer: SecondOrderLayer, s: LayerStatistics, covariance: tf.Tensor2D): tf.Tensor2D {
  if (layer.biasName === undefined) return covariance;
  const column = tf.reshape(s.a, [layer.inputDim, 1]);
  const top = tf.concat<tf.Tensor2D>([covariance, column as tf.Tensor2D], 1);
  const bottom = tf.concat<tf.Tensor2D>([tf.reshape(s.a, [1, layer.inputDim]) as tf.Tensor2D, tf.ones([1, 1])], 1);
  return tf.concat<tf.Tensor2D>([top, bottom], 0);
}

/** The EMA step of every layer with fresh statistics; non-finite results are rejected. */
function updateFactors(
  layers: readonly SecondOrderLayer[],
  state: KfacPreconditionerState,
  statistics: StatisticsByLayer,
  options: ResolvedKfacOptions,
): { layers: Record<string, KfacLayerState>; rejected: string[] } {
  const next: Record<string, KfacLayerState> = { ...state.layers };
  const candidates: { layer: SecondOrderLayer; s: LayerStatistics; input: tf.Tensor2D; output: tf.Tensor2D }[] = [];
  for (const layer of layers) {
    const s = statistics[layer.name];
    const old = state.layers[layer.name] as KfacLayerState;
    if (s === undefined || s.step === old.statisticsStep) continue;
    checkStatistics(WHERE, layer, s);
    if (s.covariance === undefined) {
      throw new RangeError(
        `${WHERE}: the statistics of layer '${layer.name}' carry no covariance: capture with { covariance: true } (prepareModel or createCapture)`,
      );
    }
    if (s.covariance.a.shape[0] !== layer.inputDim || s.covariance.g.shape[0] !== layer.outputDim) {
      throw new RangeError(
        `${WHERE}(layer '${layer.name}'): covariances of shapes [${s.covariance.a.shape.join(', ')}] and [${s.covariance.g.shape.join(', ')}], ` +
          `expected [${layer.inputDim}, ${layer.inputDim}] and [${layer.outputDim}, ${layer.outputDim}]`,
      );
    }
    const count = outputGradientCount(layer, options.gradientScale, s);
    const inputCovariance = foldedInputCovariance(layer, s, s.covariance.a);
    const outputCovariance = count === 1 ? s.covariance.g : tf.mul<tf.Tensor2D>(s.covariance.g, tf.scalar(count * count));
    const first = old.statisticsStep < 0;
    // The captured covariances belong to the capture: the first factors are copies of our own.
    const blend = (factor: tf.Tensor2D, fresh: tf.Tensor2D): tf.Tensor2D =>
      first ? tf.clone(fresh) : tf.add<tf.Tensor2D>(tf.mul(factor, tf.scalar(options.gamma)), tf.mul(fresh, tf.scalar(1 - options.gamma)));
    candidates.push({ layer, s, input: blend(old.inputFactor, inputCovariance), output: blend(old.outputFactor, outputCovariance) });
  }
  const rejected: string[] = [];
  if (candidates.length === 0) return { layers: next, rejected };
  const flags = tf.stack(candidates.map(({ input, output }) => tf.cast(finiteFlag([input, output]), 'int32'))).dataSync();
  candidates.forEach(({ layer, s, input, output }, i) => {
    const old = next[layer.name] as KfacLayerState;
    if (flags[i] === 1) next[layer.name] = { ...old, inputFactor: input, outputFactor: output, statisticsStep: s.step };
    else rejected.push(layer.name);
  });
  return { layers: next, rejected };
}

/** Recomputes the damped inverses of every layer with factors; a failed inversion keeps the previous inverse. */
function updateInverses(
  layers: readonly SecondOrderLayer[],
  factors: Record<string, KfacLayerState>,
  damping: number,
): { layers: Record<string, KfacLayerState>; failed: string[] } {
  if (layers.length === 0) return { layers: factors, failed: [] };
  const next = { ...factors };
  const failed: string[] = [];
  const invert = (matrix: tf.Tensor2D, previous: tf.Tensor2D, label: string): tf.Tensor2D => {
    try {
      return dampedInverse(matrix, damping);
    } catch (error) {
      if (!(error instanceof RangeError)) throw error;
      failed.push(label);
      return previous;
    }
  };
  for (const layer of layers) {
    const f = next[layer.name] as KfacLayerState;
    if (f.statisticsStep < 0) continue;
    next[layer.name] = {
      ...f,
      inputInverse: invert(f.inputFactor, f.inputInverse, `${layer.name}/input`),
      outputInverse: invert(f.outputFactor, f.outputInverse, `${layer.name}/output`),
    };
  }
  return { layers: next, failed };
}

/**
 * The KFAC preconditioner (spec eq. 2–4, KAISA's defaults) as a transform. For every
 * second-order layer it keeps the Kronecker factors as moving averages of the captured
 * covariances,
 *
 *     A ← γA + (1−γ) E[ããᵀ]      (ã = [x, 1]: the input rows with the bias folded in)
 *     G ← γG + (1−γ) E[ggᵀ]      (g = ∂Loss/∂y, times count with gradientScale 'sum')
 *
 * (the first covariances replace the placeholders), recomputes the damped inverses
 * `(A + λI)⁻¹` and `(G + λI)⁻¹` with `@mkor/linalg`'s `dampedInverse` every `inverseInterval`
 * steps (stale in between: λ on each factor, as KAISA), and preconditions
 *
 *     ΔW = (G + λI)⁻¹ ∇W (A + λI)⁻¹      — in tfjs's kernel layout  ΔK = (A + λI)⁻¹ [∇K; ∇b] (G + λI)⁻¹
 *
 * then scales the updates (KL-clip `ν = min(1, sqrt(κ / |Σ ΔW·∇W·lr²|))` by default, or the
 * norm rescale). Other variables pass through. Chain a first-order transform after it; `kfac()` does.
 *
 * Statistics come from `context.extras.statistics` and must carry `covariance` (capture with
 * `{ covariance: true }`); a layer without fresh statistics keeps its factors. New factors that
 * are not finite are not folded in, and an inversion that fails (`A + λI` not positive definite
 * in float32) keeps the previous inverse; both are counted. Costs per factor update one
 * read-back of a few flags, per inversion those of `dampedInverse`, and with `collectMetrics`
 * one read-back of the scale factors per step.
 */
export function kfacPreconditioner(layers: LayerSource, options: KfacOptions = {}): Transform<KfacPreconditionerState> {
  const resolved = resolveKfacOptions(options);
  const layersOf = lazyLayers(WHERE, layers);
  return {
    init: () => ({
      step: 0,
      layers: Object.fromEntries(
        layersOf().map((layer) => {
          const size = foldedInputSize(layer);
          const entry: KfacLayerState = {
            inputFactor: tf.eye(size),
            outputFactor: tf.eye(layer.outputDim),
            inputInverse: tf.eye(size),
            outputInverse: tf.eye(layer.outputDim),
            statisticsStep: -1,
          };
          return [layer.name, entry];
        }),
      ),
      totals: { factorUpdates: 0, inverseUpdates: 0, failedInversions: 0, rejectedFactors: 0 },
      metrics: null,
    }),
    update: (gradients: TensorMap, state, context) => {
      const list = layersOf();
      const statistics = (context?.extras?.statistics ?? {}) as StatisticsByLayer;
      checkLayerCoverage(WHERE, list.map((layer) => layer.name), state.layers, statistics);
      const factorUpdate = state.step % resolved.factorUpdateInterval === 0;
      const inverseUpdate = state.step % resolved.inverseInterval === 0;
      const factorStart = performance.now();
      let layerStates: Record<string, KfacLayerState> = { ...state.layers };
      let rejected: string[] = [];
      let failed: string[] = [];
      if (factorUpdate) ({ layers: layerStates, rejected } = updateFactors(list, state, statistics, resolved));
      // Every inverseInterval steps all layers; in between, only layers whose first factors just arrived.
      const toInvert = list.filter(
        (layer) => inverseUpdate || ((state.layers[layer.name] as KfacLayerState).statisticsStep < 0 && (layerStates[layer.name] as KfacLayerState).statisticsStep >= 0),
      );
      ({ layers: layerStates, failed } = updateInverses(toInvert, layerStates, resolved.damping));
      const factorMs = performance.now() - factorStart;

      const preconditionStart = performance.now();
      const { updates, scaleFactors } = preconditionLayers(WHERE, list, gradients, state.step, resolved, (layer, gradient) => {
        const f = layerStates[layer.name] as KfacLayerState;
        return tf.matMul(tf.matMul(f.inputInverse, gradient), f.outputInverse);
      });
      const preconditionMs = performance.now() - preconditionStart;
      const metrics: KfacStepMetrics | null = resolved.collectMetrics
        ? { step: state.step, factorUpdate, inverseUpdate, failedInversions: failed, rejectedFactors: rejected, scaleFactors, factorMs, preconditionMs }
        : null;
      return {
        updates,
        state: {
          step: state.step + 1,
          layers: layerStates,
          totals: {
            factorUpdates: state.totals.factorUpdates + (factorUpdate ? 1 : 0),
            inverseUpdates: state.totals.inverseUpdates + (inverseUpdate ? 1 : 0),
            failedInversions: state.totals.failedInversions + failed.length,
            rejectedFactors: state.totals.rejectedFactors + rejected.length,
          },
          metrics,
        },
      };
    },
  };
}
