import { type Hyperparameter, type TensorMap, type Transform, type UpdateContext, checkNumber, hasFusedKernel, runFusedKernel } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';

import { checkHyperparameter, checkSameShape, entryFor, perParameter, resolveWithin } from './hyperparameter';

/** Bounds of an exponential-decay rate such as a momentum or Adam's β: [0, 1). */
const DECAY_RATE = { min: 0, max: 1, maxExclusive: true } as const;
/** Bounds of a learning rate or a weight decay: a finite number ≥ 0. */
const NON_NEGATIVE = { min: 0 } as const;

/**
 * Chooses the parameters a transform acts on, e.g. `(name) => !name.endsWith('/bias')` to keep
 * biases out of weight decay. Called with each parameter's name and current value.
 */
export type ParameterMask = (name: string, param: tf.Tensor) => boolean;

/** The parameters from `context.params`, or a `TypeError` naming the transform that needs them. */
function paramsFrom(where: string, context: UpdateContext | undefined): TensorMap {
  if (context?.params === undefined) {
    throw new TypeError(`${where}: context.params is required (the current parameters the updates apply to)`);
  }
  return context.params;
}

/** The state of {@link traceMomentum}: the step count and one momentum buffer per parameter. */
export interface TraceMomentumState {
  readonly step: number;
  readonly trace: Readonly<Record<string, tf.Tensor>>;
}

/** Options of {@link traceMomentum}. */
export interface TraceMomentumOptions {
  /** The momentum μ ∈ [0, 1), constant or scheduled. */
  readonly decay: Hyperparameter;
  /** Nesterov's look-ahead form. Default false. */
  readonly nesterov?: boolean;
}

/**
 * Heavy-ball momentum (optax's `trace`, the accumulation of `tf.train.momentum` and PyTorch's SGD):
 *
 *     b_t = μ·b_{t−1} + g_t,   u_t = b_t              (heavy ball)
 *     u_t = g_t + μ·b_t                               (Nesterov)
 *
 * with `b_0 = 0`. The learning rate is applied later in the chain ({@link scaleByLearningRate}).
 */
export function traceMomentum(options: TraceMomentumOptions): Transform<TraceMomentumState> {
  const where = 'traceMomentum';
  const decay = checkHyperparameter(where, 'decay', options.decay, DECAY_RATE);
  const nesterov = options.nesterov ?? false;
  if (typeof nesterov !== 'boolean') throw new TypeError(`${where}: nesterov must be a boolean, got ${String(nesterov)}`);
  return {
    init: (params) => ({ step: 0, trace: perParameter(params, (p) => tf.zerosLike(p)) }),
    update: (updates, state) => {
      const mu = resolveWithin(where, 'decay', decay, state.step, DECAY_RATE);
      const trace: Record<string, tf.Tensor> = { ...state.trace };
      const out: Record<string, tf.Tensor> = {};
      for (const [name, g] of Object.entries(updates)) {
        const previous = entryFor(where, 'the momentum state', state.trace, name);
        checkSameShape(where, name, g, previous);
        const next = tf.add(tf.mul(previous, mu), g);
        trace[name] = next;
        // A clone (same data, own handle), so a caller disposing the updates keeps the state.
        out[name] = nesterov ? tf.add(g, tf.mul(next, mu)) : tf.clone(next);
      }
      return { updates: out, state: { step: state.step + 1, trace } };
    },
  };
}

/** The state of {@link scaleByAdam}: the step count and the two moment estimates per parameter. */
export interface ScaleByAdamState {
  readonly step: number;
  readonly firstMoment: Readonly<Record<string, tf.Tensor>>;
  readonly secondMoment: Readonly<Record<string, tf.Tensor>>;
}

/** Options of {@link scaleByAdam}. */
export interface ScaleByAdamOptions {
  /** Decay β₁ ∈ [0, 1) of the first moment. Default 0.9. */
  readonly beta1?: number;
  /** Decay β₂ ∈ [0, 1) of the second moment. Default 0.999. */
  readonly beta2?: number;
  /** ε > 0 added to √v̂ in the denominator. Default 1e-8. */
  readonly epsilon?: number;
}

/** The resolved Adam constants, validated. */
export function resolveAdamOptions(where: string, options: ScaleByAdamOptions): Required<ScaleByAdamOptions> {
  return {
    beta1: checkNumber(where, 'beta1', options.beta1 ?? 0.9, DECAY_RATE),
    beta2: checkNumber(where, 'beta2', options.beta2 ?? 0.999, DECAY_RATE),
    epsilon: checkNumber(where, 'epsilon', options.epsilon ?? 1e-8, { min: 0, minExclusive: true }),
  };
}

/**
 * Adam's bias-corrected direction (Kingma & Ba 2015, Algorithm 1), per element:
 *
 *     m_t = β₁·m_{t−1} + (1−β₁)·g_t,      v_t = β₂·v_{t−1} + (1−β₂)·g_t²
 *     m̂_t = m_t / (1−β₁ᵗ),                v̂_t = v_t / (1−β₂ᵗ)
 *     u_t = m̂_t / (√v̂_t + ε)
 *
 * with `m_0 = v_0 = 0` and t counting from 1. The βs are constants, not schedules: the bias
 * correction `1−βᵗ` is only exact for a constant β. Where the backend has the fused kernel
 * (`FUSED_KERNELS.adam` of `@mkor/core`) each parameter's step is one pass, equal bit for bit.
 */
export function scaleByAdam(options: ScaleByAdamOptions = {}): Transform<ScaleByAdamState> {
  const where = 'scaleByAdam';
  const { beta1, beta2, epsilon } = resolveAdamOptions(where, options);
  return {
    init: (params) => ({
      step: 0,
      firstMoment: perParameter(params, (p) => tf.zerosLike(p)),
      secondMoment: perParameter(params, (p) => tf.zerosLike(p)),
    }),
    update: (updates, state) => {
      const t = state.step + 1;
      const correction1 = 1 - beta1 ** t;
      const correction2 = 1 - beta2 ** t;
      const fused = hasFusedKernel('adam');
      const firstMoment: Record<string, tf.Tensor> = { ...state.firstMoment };
      const secondMoment: Record<string, tf.Tensor> = { ...state.secondMoment };
      const out: Record<string, tf.Tensor> = {};
      for (const [name, g] of Object.entries(updates)) {
        const m = entryFor(where, 'the first-moment state', state.firstMoment, name);
        const v = entryFor(where, 'the second-moment state', state.secondMoment, name);
        checkSameShape(where, name, g, m);
        if (fused && g.dtype === 'float32') {
          const attrs = { beta1, beta2, epsilon, correction1, correction2 };
          const [nextM, nextV, direction] = runFusedKernel<[tf.Tensor, tf.Tensor, tf.Tensor]>('adam', { gradient: g, firstMoment: m, secondMoment: v }, attrs);
          firstMoment[name] = nextM;
          secondMoment[name] = nextV;
          out[name] = direction;
          continue;
        }
        const nextM = tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1));
        const nextV = tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2));
        firstMoment[name] = nextM;
        secondMoment[name] = nextV;
        const denominator = tf.add(tf.sqrt(tf.div(nextV, correction2)), epsilon);
        out[name] = tf.div(tf.div(nextM, correction1), denominator);
      }
      return { updates: out, state: { step: t, firstMoment, secondMoment } };
    },
  };
}

/** The state of a transform whose only state is its step count (for schedules). */
export interface StepCountState {
  readonly step: number;
}

/** Options of {@link addDecayedWeights}. */
export interface AddDecayedWeightsOptions {
  /** λ ≥ 0, constant or scheduled. */
  readonly weightDecay: Hyperparameter;
  /** The parameters that decay; default all. Those left out pass through unchanged. */
  readonly mask?: ParameterMask;
}

/**
 * Adds decayed weights to the updates: `u ← u + λ·w` for every parameter the mask selects.
 * Before a first-order scaling (first in an SGD or Adam chain) this is L2 regularisation added to
 * the gradient; after it (AdamW, LAMB) it is decoupled weight decay (Loshchilov & Hutter 2019).
 * Needs `context.params`.
 */
export function addDecayedWeights(options: AddDecayedWeightsOptions): Transform<StepCountState> {
  const where = 'addDecayedWeights';
  const weightDecay = checkHyperparameter(where, 'weightDecay', options.weightDecay, NON_NEGATIVE);
  const mask = options.mask;
  if (mask !== undefined && typeof mask !== 'function') {
    throw new TypeError(`${where}: mask must be a function (name, param) => boolean, got ${typeof mask}`);
  }
  return {
    init: () => ({ step: 0 }),
    update: (updates, state, context) => {
      const lambda = resolveWithin(where, 'weightDecay', weightDecay, state.step, NON_NEGATIVE);
      const params = paramsFrom(where, context);
      const out: Record<string, tf.Tensor> = {};
      for (const [name, u] of Object.entries(updates)) {
        const w = entryFor(where, 'context.params', params, name);
        checkSameShape(where, name, u, w);
        out[name] = mask === undefined || mask(name, w) ? tf.add(u, tf.mul(w, lambda)) : u;
      }
      return { updates: out, state: { step: state.step + 1 } };
    },
  };
}

/** Options of {@link scaleByTrustRatio}. */
export interface ScaleByTrustRatioOptions {
  /** Lower clip γ_l of φ(‖w‖) = clip(‖w‖, γ_l, γ_u). Default 0 (no clip). */
  readonly minWeightNorm?: number;
  /** Upper clip γ_u of φ(‖w‖) = clip(‖w‖, γ_l, γ_u). Default ∞ (no clip). */
  readonly maxWeightNorm?: number;
  /** The parameters that get a trust ratio; default all. Those left out pass through unchanged. */
  readonly mask?: ParameterMask;
}

/**
 * LAMB's layer-wise trust ratio (You et al. 2019, Algorithm 2): each parameter's update is scaled
 * by
 *
 *     ratio = φ(‖w‖) / ‖u‖,     φ(x) = min(max(x, γ_l), γ_u)
 *
 * (Frobenius norms over the whole parameter tensor), and by 1 when ‖w‖ = 0 or ‖u‖ = 0 (a freshly
 * zeroed layer moves at the plain rate; a zero update stays zero). Needs `context.params`.
 */
export function scaleByTrustRatio(options: ScaleByTrustRatioOptions = {}): Transform<Record<string, never>> {
  const where = 'scaleByTrustRatio';
  const minWeightNorm = checkNumber(where, 'minWeightNorm', options.minWeightNorm ?? 0, { min: 0 });
  const maxWeightNorm = options.maxWeightNorm ?? Number.POSITIVE_INFINITY;
  if (!(typeof maxWeightNorm === 'number' && maxWeightNorm >= minWeightNorm && maxWeightNorm > 0)) {
    throw new RangeError(
      `${where}: maxWeightNorm must be a number > 0 and ≥ minWeightNorm (${minWeightNorm}), got ${String(maxWeightNorm)}`,
    );
  }
  const mask = options.mask;
  if (mask !== undefined && typeof mask !== 'function') {
    throw new TypeError(`${where}: mask must be a function (name, param) => boolean, got ${typeof mask}`);
  }
  return {
    init: () => ({}),
    update: (updates, state, context) => {
      const params = paramsFrom(where, context);
      const out: Record<string, tf.Tensor> = {};
      for (const [name, u] of Object.entries(updates)) {
        const w = entryFor(where, 'context.params', params, name);
        checkSameShape(where, name, u, w);
        if (mask !== undefined && !mask(name, w)) {
          out[name] = u;
          continue;
        }
        const weightNorm = tf.sqrt(tf.sum(tf.square(w)));
        const updateNorm = tf.sqrt(tf.sum(tf.square(u)));
        let phi: tf.Tensor = weightNorm;
        if (minWeightNorm > 0) phi = tf.maximum(phi, minWeightNorm);
        if (Number.isFinite(maxWeightNorm)) phi = tf.minimum(phi, maxWeightNorm);
        const bothPositive = tf.logicalAnd(tf.greater(weightNorm, 0), tf.greater(updateNorm, 0));
        // The division's value is only selected where ‖u‖ > 0; elsewhere the ratio is 1.
        const ratio = tf.where(bothPositive, tf.div(phi, updateNorm), tf.onesLike(weightNorm));
        out[name] = tf.mul(u, ratio);
      }
      return { updates: out, state };
    },
  };
}

/**
 * The learning-rate step of a chain: `u ← −η_t·u`, so the final updates are added to the
 * parameters (`w ← w + u`). `η` is a constant or a schedule of this transform's step count
 * (e.g. `cosineDecay(1e-3, 10_000)` from `@mkor/core`), and must be finite and ≥ 0.
 */
export function scaleByLearningRate(learningRate: Hyperparameter): Transform<StepCountState> {
  const where = 'scaleByLearningRate';
  const rate = checkHyperparameter(where, 'learningRate', learningRate, NON_NEGATIVE);
  return {
    init: () => ({ step: 0 }),
    update: (updates, state) => {
      const eta = resolveWithin(where, 'learningRate', rate, state.step, NON_NEGATIVE);
      const out: Record<string, tf.Tensor> = {};
      for (const [name, u] of Object.entries(updates)) out[name] = tf.mul(u, -eta);
      return { updates: out, state: { step: state.step + 1 } };
    },
  };
}
