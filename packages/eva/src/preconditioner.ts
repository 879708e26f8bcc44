import type { LayerStatistics, SecondOrderLayer, StatisticsByLayer } from '@mkor/capture';
import { type TensorMap, type Transform, checkLayerCoverage, checkNumber } from '@mkor/core';
import type { LayerSource, ResolvedSecondOrderOptions, SecondOrderOptions, SecondOrderStepMetrics } from '@mkor/kfac';
import { checkStatistics, foldedInputSize, lazyLayers, outputGradientCount, preconditionLayers, resolveSecondOrderOptions } from '@mkor/kfac';
import * as tf from '@tensorflow/tfjs-core';

/** Hyperparameters of the Eva preconditioner; every field has a default. */
export interface EvaOptions extends SecondOrderOptions {
  /** Momentum γ ∈ (0, 1) of the vectors: `ā ← γā + (1−γ)a`, `ḡ ← γḡ + (1−γ)g`. Default 0.95. */
  readonly gamma?: number;
  /** Damping λ > 0 of `(āāᵀ ⊗ ḡḡᵀ + λI)⁻¹`. Default 0.03. */
  readonly damping?: number;
  /**
   * Scale of g: `'mean'` as captured, or `'sum'` (default): times the rows (dense) or the batch
   * size (conv2d), which undoes a mean-reduced loss's `1/batch` (as MKOR's `gradientScale`).
   */
  readonly gradientScale?: 'mean' | 'sum';
  /** Read back the scale factors each step for {@link EvaStepMetrics}. Default true. */
  readonly collectMetrics?: boolean;
}

/** {@link EvaOptions} checked, with defaults. */
export interface ResolvedEvaOptions extends ResolvedSecondOrderOptions {
  readonly damping: number;
}

/** Checks Eva's options and fills in the defaults; errors name `where`. */
export function resolveEvaOptions(options: EvaOptions = {}, where = 'evaPreconditioner'): ResolvedEvaOptions {
  return {
    ...resolveSecondOrderOptions(where, options),
    damping: checkNumber(where, 'damping', options.damping ?? 0.03, { min: 0, minExclusive: true }),
  };
}

/** The per-layer part of Eva's state: two vectors, no matrices. */
export interface EvaLayerState {
  /** `ā`, the moving average of `[a, 1]` (bias folded in) or `a`, length `d_in(+1)`. */
  readonly inputVector: tf.Tensor1D;
  /** `ḡ`, the moving average of g, length `d_out`. */
  readonly outputVector: tf.Tensor1D;
  /** The `step` of the statistics last folded in (−1: none yet; the vectors are zeros). */
  readonly statisticsStep: number;
}

/**
 * What happened on the latest step, for logging: the step, the scale factors and the timings
 * (`factorMs`: the moving averages of the rank-1 vectors; `preconditionMs`: the closed-form
 * preconditioning, the KL-clip or rescale and the read-back). See `SecondOrderStepMetrics` of
 * `@mkor/kfac`.
 */
export type EvaStepMetrics = SecondOrderStepMetrics;

/** The state of {@link evaPreconditioner}. */
export interface EvaPreconditionerState {
  readonly step: number;
  readonly layers: Readonly<Record<string, EvaLayerState>>;
  readonly metrics: EvaStepMetrics | null;
}

const WHERE = 'evaPreconditioner';

/**
 * Eva's closed-form preconditioned gradient of one layer in tfjs's kernel layout (`M = [∇K; ∇b]`,
 * `[d_in(+1), d_out]`, `a` of length `d_in(+1)`, `g` of length `d_out`):
 *
 *     ΔK = (1/λ) (M − (aᵀ M g) / (‖a‖²‖g‖² + λ) · a gᵀ)
 *
 * which is `(a aᵀ ⊗ g gᵀ + λI)⁻¹ vec(M)` by Sherman–Morrison (`aaᵀ ⊗ ggᵀ = vvᵀ` with
 * `v = a ⊗ g`, `‖v‖² = ‖a‖²‖g‖²`, `vᵀvec(M) = aᵀMg`). O(d_in·d_out), no matrix is stored.
 */
export function evaPrecondition(gradient: tf.Tensor2D, a: tf.Tensor1D, g: tf.Tensor1D, damping: number): tf.Tensor2D {
  return tf.tidy(() => {
    const column = tf.reshape(a, [-1, 1]) as tf.Tensor2D;
    const row = tf.reshape(g, [1, -1]) as tf.Tensor2D;
    const projection = tf.sum(tf.mul(tf.matMul(gradient, tf.reshape(g, [-1, 1])), column));
    const denominator = tf.add(tf.mul(tf.sum(tf.square(a)), tf.sum(tf.square(g))), tf.scalar(damping));
    // The outer product a gᵀ by broadcasting ([d_in, 1] · [1, d_out]).
    const correction = tf.mul(tf.div(projection, denominator), tf.mul(column, row));
    return tf.div(tf.sub(gradient, correction), tf.scalar(damping)) as tf.Tensor2D;
  });
}

function foldedInputVector(layer: SecondOrderLayer, s: LayerStatistics): tf.Tensor1D {
  return layer.biasName === undefined ? s.a : tf.concat([s.a, tf.ones([1])]);
}

/**
 * The Eva preconditioner (Zhang et al., ICLR 2023) as a transform: per second-order layer it
 * keeps moving averages of the rank-1 vectors only (`2d` numbers, no factors),
 *
 *     ā ← γā + (1−γ)[a, 1],     ḡ ← γḡ + (1−γ)g        (the first statistics replace the zeros)
 *
 * and turns the gradient into the closed form of `(āāᵀ ⊗ ḡḡᵀ + λI)⁻¹ vec(∇W)`,
 *
 *     ΔW = (1/λ)(∇W − (ḡᵀ∇W ā)/(‖ā‖²‖ḡ‖² + λ) · ḡ āᵀ)    — kernel layout: (1/λ)(M − (āᵀMḡ)/(‖ā‖²‖ḡ‖²+λ) · ā ḡᵀ)
 *
 * (see {@link evaPrecondition}), then scales the updates (KL-clip by default, or the norm
 * rescale). Other variables pass through. Before a layer's first statistics its update is `∇W/λ`.
 * Statistics come from `context.extras.statistics`; chain a first-order backend after it, as `eva()` does.
 */
export function evaPreconditioner(layers: LayerSource, options: EvaOptions = {}): Transform<EvaPreconditionerState> {
  const resolved = resolveEvaOptions(options);
  const layersOf = lazyLayers(WHERE, layers);
  return {
    init: () => ({
      step: 0,
      layers: Object.fromEntries(
        layersOf().map((layer) => {
          const entry: EvaLayerState = {
            inputVector: tf.zeros([foldedInputSize(layer)]),
            outputVector: tf.zeros([layer.outputDim]),
            statisticsStep: -1,
          };
          return [layer.name, entry];
        }),
      ),
      metrics: null,
    }),
    update: (gradients: TensorMap, state, context) => {
      const list = layersOf();
      const statistics = (context?.extras?.statistics ?? {}) as StatisticsByLayer;
      checkLayerCoverage(WHERE, list.map((layer) => layer.name), state.layers, statistics);
      const factorStart = performance.now();
      const layerStates: Record<string, EvaLayerState> = { ...state.layers };
      for (const layer of list) {
        const s = statistics[layer.name];
        const old = state.layers[layer.name] as EvaLayerState;
        if (s === undefined || s.step === old.statisticsStep) continue;
        checkStatistics(WHERE, layer, s);
        const a = foldedInputVector(layer, s);
        const count = outputGradientCount(layer, resolved.gradientScale, s);
        const g = count === 1 ? s.g : tf.mul<tf.Tensor1D>(s.g, tf.scalar(count));
        const first = old.statisticsStep < 0;
        const blend = (average: tf.Tensor1D, fresh: tf.Tensor1D): tf.Tensor1D =>
          first ? fresh : tf.add<tf.Tensor1D>(tf.mul(average, tf.scalar(resolved.gamma)), tf.mul(fresh, tf.scalar(1 - resolved.gamma)));
        // The captured vectors belong to the capture: keep a copy of our own.
        layerStates[layer.name] = {
          inputVector: first ? tf.clone(a) : blend(old.inputVector, a),
          outputVector: first ? tf.clone(g) : blend(old.outputVector, g),
          statisticsStep: s.step,
        };
      }
      const factorMs = performance.now() - factorStart;

      const preconditionStart = performance.now();
      const { updates, scaleFactors } = preconditionLayers(WHERE, list, gradients, state.step, resolved, (layer, gradient) => {
        const v = layerStates[layer.name] as EvaLayerState;
        return evaPrecondition(gradient, v.inputVector, v.outputVector, resolved.damping);
      });
      const preconditionMs = performance.now() - preconditionStart;
      const metrics: EvaStepMetrics | null = resolved.collectMetrics ? { step: state.step, scaleFactors, factorMs, preconditionMs } : null;
      return { updates, state: { step: state.step + 1, layers: layerStates, metrics } };
    },
  };
}
