import { type Hyperparameter, type Transform, chain } from '@mkor/core';

import { checkHyperparameter } from './hyperparameter';
import {
  type ParameterMask,
  type ScaleByAdamOptions,
  addDecayedWeights,
  resolveAdamOptions,
  scaleByAdam,
  scaleByLearningRate,
  scaleByTrustRatio,
  traceMomentum,
} from './transforms';

/** The names of the optimizers of this package, as {@link FirstOrderConfig} records them. */
export type FirstOrderName = 'sgd' | 'adam' | 'adamw' | 'lamb';

/**
 * What a named optimizer was built with, as plain JSON (for `getConfig` and saved models): its
 * name and its options. Only optimizers whose options are all numbers and booleans have one (a
 * schedule or a mask is a function, which a configuration cannot hold).
 */
export type FirstOrderConfig = {
  readonly name: FirstOrderName;
  readonly options: Readonly<Record<string, number | boolean>>;
};

/**
 * A named optimizer: a chain whose final updates are added to the parameters (`w ← w + u`).
 * Its state is the array of its parts' states, in the order each optimizer's TSDoc lists them
 * (plain tensors and numbers, so it checkpoints with `flattenState` from `@mkor/core`). It is
 * typed `unknown` so that every optimizer fits wherever a `Transform<unknown>` backend is expected.
 * It carries its learning rate (the one source of it for an optimizer that uses this one as its
 * backend, e.g. KFAC's KL-clip) and its {@link FirstOrderConfig}, or null when it has none.
 */
export type Optimizer = Transform<unknown> & {
  readonly learningRate: Hyperparameter;
  readonly config: FirstOrderConfig | null;
};

// Transform<S> is invariant in S, so a list of differently typed parts needs `any`.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyTransform = Transform<any>;

const NON_NEGATIVE = { min: 0 } as const;
const MOMENTUM = { min: 0, max: 1, maxExclusive: true } as const;

/** The chain of `parts`, carrying the learning rate and the configuration of `name` with `options`. */
function named(name: FirstOrderName, options: object, learningRate: Hyperparameter, parts: AnyTransform[]): Optimizer {
  const values = Object.entries(options).filter(([, value]) => value !== undefined);
  const serialisable = values.every(([, value]) => typeof value === 'number' || typeof value === 'boolean');
  const config = serialisable ? { name, options: Object.fromEntries(values) as Record<string, number | boolean> } : null;
  return { ...(chain(...parts) as Transform<unknown>), learningRate, config };
}

/**
 * Rebuilds a named optimizer from its {@link FirstOrderConfig} (e.g. one read from a saved model's
 * `getConfig`): `adam({ learningRate: 1e-3 })` gives back an equal `adam({ learningRate: 1e-3 })`.
 * Throws a `RangeError` for a name this package does not have.
 */
export function firstOrderFromConfig(config: FirstOrderConfig): Optimizer {
  const options = config?.options as never;
  switch (config?.name) {
    case 'sgd':
      return sgd(options);
    case 'adam':
      return adam(options);
    case 'adamw':
      return adamw(options);
    case 'lamb':
      return lamb(options);
    default:
      throw new RangeError(`firstOrderFromConfig: no optimizer named ${JSON.stringify(config?.name)} (sgd, adam, adamw, lamb)`);
  }
}

/** Whether a weight decay given as an option adds a part to the chain (0 and absent do not). */
function hasWeightDecay(weightDecay: Hyperparameter | undefined): weightDecay is Hyperparameter {
  return weightDecay !== undefined && weightDecay !== 0;
}

/** Options of {@link sgd}. */
export interface SgdOptions {
  /** η ≥ 0, constant or scheduled. */
  readonly learningRate: Hyperparameter;
  /** Heavy-ball momentum μ ∈ [0, 1), constant or scheduled. Default none. */
  readonly momentum?: Hyperparameter;
  /** Nesterov momentum (needs `momentum`). Default false. */
  readonly nesterov?: boolean;
  /** L2 coefficient λ ≥ 0 added to the gradient before momentum (PyTorch's SGD). Default 0. */
  readonly weightDecay?: Hyperparameter;
  /** The parameters that decay; default all. */
  readonly weightDecayMask?: ParameterMask;
}

/**
 * Stochastic gradient descent, `chain(addDecayedWeights?, traceMomentum?, scaleByLearningRate)`:
 *
 *     g ← g + λw,   b_t = μ·b_{t−1} + g,   w ← w − η·b_t    (Nesterov: w ← w − η·(g + μ·b_t))
 *
 * Parts whose option is absent (or a constant 0) are left out of the chain.
 */
export function sgd(options: SgdOptions): Optimizer {
  const where = 'sgd';
  const learningRate = checkHyperparameter(where, 'learningRate', options.learningRate, NON_NEGATIVE);
  const parts: AnyTransform[] = [];
  if (hasWeightDecay(options.weightDecay)) {
    checkHyperparameter(where, 'weightDecay', options.weightDecay, NON_NEGATIVE);
    parts.push(addDecayedWeights({ weightDecay: options.weightDecay, mask: options.weightDecayMask }));
  }
  if (options.momentum !== undefined) {
    const decay = checkHyperparameter(where, 'momentum', options.momentum, MOMENTUM);
    parts.push(traceMomentum({ decay, nesterov: options.nesterov ?? false }));
  } else if (options.nesterov === true) {
    throw new RangeError(`${where}: nesterov needs a momentum, got none`);
  }
  parts.push(scaleByLearningRate(learningRate));
  return named('sgd', options, learningRate, parts);
}

/** Options of {@link adam}. */
export interface AdamOptions extends ScaleByAdamOptions {
  /** η ≥ 0, constant or scheduled. */
  readonly learningRate: Hyperparameter;
  /** L2 coefficient λ ≥ 0 added to the gradient before the moments (not decoupled). Default 0. */
  readonly weightDecay?: Hyperparameter;
  /** The parameters that decay; default all. */
  readonly weightDecayMask?: ParameterMask;
}

/**
 * Adam (Kingma & Ba 2015), `chain(addDecayedWeights?, scaleByAdam, scaleByLearningRate)`:
 * `g ← g + λw`, then `w ← w − η·m̂/(√v̂ + ε)` (see {@link scaleByAdam}). A weight decay here is
 * L2 regularisation, which Adam rescales per element; for decoupled decay use {@link adamw}.
 */
export function adam(options: AdamOptions): Optimizer {
  const where = 'adam';
  const learningRate = checkHyperparameter(where, 'learningRate', options.learningRate, NON_NEGATIVE);
  const adamOptions = resolveAdamOptions(where, options);
  const parts: AnyTransform[] = [];
  if (hasWeightDecay(options.weightDecay)) {
    checkHyperparameter(where, 'weightDecay', options.weightDecay, NON_NEGATIVE);
    parts.push(addDecayedWeights({ weightDecay: options.weightDecay, mask: options.weightDecayMask }));
  }
  parts.push(scaleByAdam(adamOptions), scaleByLearningRate(learningRate));
  return named('adam', options, learningRate, parts);
}

/** Options of {@link adamw}. */
export interface AdamwOptions extends ScaleByAdamOptions {
  /** η ≥ 0, constant or scheduled. */
  readonly learningRate: Hyperparameter;
  /** Decoupled weight decay λ ≥ 0, constant or scheduled. Default 0.01 (PyTorch's). */
  readonly weightDecay?: Hyperparameter;
  /** The parameters that decay; default all (biases and norms are often left out). */
  readonly weightDecayMask?: ParameterMask;
}

/**
 * AdamW (Loshchilov & Hutter 2019), `chain(scaleByAdam, addDecayedWeights, scaleByLearningRate)`:
 *
 *     w ← w − η·(m̂/(√v̂ + ε) + λw)
 *
 * The decay is decoupled from the moments and scaled by the learning rate (as in PyTorch and optax).
 */
export function adamw(options: AdamwOptions): Optimizer {
  const where = 'adamw';
  const learningRate = checkHyperparameter(where, 'learningRate', options.learningRate, NON_NEGATIVE);
  const adamOptions = resolveAdamOptions(where, options);
  const weightDecay = checkHyperparameter(where, 'weightDecay', options.weightDecay ?? 0.01, NON_NEGATIVE);
  const parts: AnyTransform[] = [scaleByAdam(adamOptions)];
  if (hasWeightDecay(weightDecay)) {
    parts.push(addDecayedWeights({ weightDecay, mask: options.weightDecayMask }));
  }
  parts.push(scaleByLearningRate(learningRate));
  return named('adamw', options, learningRate, parts);
}

/** Options of {@link lamb}. */
export interface LambOptions extends ScaleByAdamOptions {
  /** η ≥ 0, constant or scheduled. */
  readonly learningRate: Hyperparameter;
  /** Decoupled weight decay λ ≥ 0 inside the trust-ratio step. Default 0. */
  readonly weightDecay?: Hyperparameter;
  /** The parameters that decay; default all. */
  readonly weightDecayMask?: ParameterMask;
  /** The parameters that get a trust ratio; default all (the others take the plain Adam step). */
  readonly trustRatioMask?: ParameterMask;
  /** Lower clip γ_l of φ(‖w‖). Default 0 (φ is the identity). */
  readonly minWeightNorm?: number;
  /** Upper clip γ_u of φ(‖w‖). Default ∞ (φ is the identity). */
  readonly maxWeightNorm?: number;
}

/**
 * LAMB (You et al. 2019, Algorithm 2),
 * `chain(scaleByAdam, addDecayedWeights?, scaleByTrustRatio, scaleByLearningRate)`, per layer:
 *
 *     r = m̂/(√v̂ + ε),   u = r + λw,   w ← w − η·(φ(‖w‖)/‖u‖)·u
 *
 * with φ the identity unless clipped, and a ratio of 1 when ‖w‖ = 0 or ‖u‖ = 0. Default
 * ε = 1e-6 (the paper's and optax's); β₁ = 0.9, β₂ = 0.999.
 */
export function lamb(options: LambOptions): Optimizer {
  const where = 'lamb';
  const learningRate = checkHyperparameter(where, 'learningRate', options.learningRate, NON_NEGATIVE);
  const adamOptions = resolveAdamOptions(where, { ...options, epsilon: options.epsilon ?? 1e-6 });
  const parts: AnyTransform[] = [scaleByAdam(adamOptions)];
  if (hasWeightDecay(options.weightDecay)) {
    checkHyperparameter(where, 'weightDecay', options.weightDecay, NON_NEGATIVE);
    parts.push(addDecayedWeights({ weightDecay: options.weightDecay, mask: options.weightDecayMask }));
  }
  parts.push(
    scaleByTrustRatio({
      minWeightNorm: options.minWeightNorm,
      maxWeightNorm: options.maxWeightNorm,
      mask: options.trustRatioMask,
    }),
    scaleByLearningRate(learningRate),
  );
  return named('lamb', options, learningRate, parts);
}
