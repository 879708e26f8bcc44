import type { Hyperparameter, Transform } from '@mkor/core';

import { type FirstOrderConfig, type Optimizer, adam, firstOrderFromConfig } from './optimizers';

/** The learning rate {@link resolveBackend} uses when none is given: 1e-3. */
export const DEFAULT_LEARNING_RATE = 1e-3;

/**
 * The first-order part of the options of an optimizer that hands its (preconditioned) gradients
 * to a first-order backend: `MkorOptimizer`, `KfacOptimizer`, `EvaOptimizer`.
 */
export interface BackendOptions {
  /** The first-order backend as a transform from this package. Default `adam({ learningRate })`. */
  readonly backend?: Transform<unknown>;
  /** The learning rate of the default Adam backend, a positive finite number. Default 1e-3. */
  readonly learningRate?: number;
}

/** {@link BackendOptions} checked, with defaults. */
export interface ResolvedBackend {
  /** The backend given, or `adam({ learningRate })`. */
  readonly backend: Transform<unknown>;
  /**
   * The one learning rate: the backend's own when it is a named optimizer of this package (which
   * carries it), else the one given, else {@link DEFAULT_LEARNING_RATE} for the default Adam;
   * undefined for a transform of your own given without one.
   */
  readonly learningRate: Hyperparameter | undefined;
  /**
   * What the optimizer's `getConfig` reports of these options: the backend's
   * {@link FirstOrderConfig} (a saved model rebuilds it with `firstOrderFromConfig`), or
   * `'custom'` for a transform a configuration cannot hold; and the learning rate when it is a
   * number (null for a schedule or none).
   */
  readonly config: { readonly backend: FirstOrderConfig | 'custom'; readonly learningRate: number | null };
}

/** What {@link resolveBackend} needs to know of the optimizer it serves. */
export interface BackendUse {
  /**
   * Whether the method itself uses the learning rate (KFAC's and Eva's KL-clip do; MKOR does
   * not). When false, a `learningRate` given next to a transform of your own is refused as unused.
   */
  readonly methodUsesLearningRate: boolean;
}

/**
 * Checks an optimizer's {@link BackendOptions} and fills in the defaults, so that the learning
 * rate has one source of truth. The learning rate must be a positive finite number (a
 * `RangeError` naming `where` otherwise, e.g. `KfacOptimizer: learningRate must be a positive
 * finite number, got 0`). Without a `backend` the backend is `adam({ learningRate })`. A named
 * optimizer of this package carries its own rate: giving `learningRate` next to it is refused
 * (the two could disagree). With a transform of your own, `learningRate` is the rate the method
 * should assume (KFAC's KL-clip), and is refused when the method does not use one.
 */
export function resolveBackend(where: string, options: BackendOptions, use: BackendUse): ResolvedBackend {
  const { backend, learningRate } = options;
  if (learningRate !== undefined && !(typeof learningRate === 'number' && Number.isFinite(learningRate) && learningRate > 0)) {
    throw new RangeError(`${where}: learningRate must be a positive finite number, got ${String(learningRate)}`);
  }
  if (backend === undefined) {
    const rate = learningRate ?? DEFAULT_LEARNING_RATE;
    const defaultAdam = adam({ learningRate: rate });
    return { backend: defaultAdam, learningRate: rate, config: { backend: defaultAdam.config ?? 'custom', learningRate: rate } };
  }
  const own = (backend as Partial<Optimizer>).learningRate;
  if (own !== undefined && learningRate !== undefined) {
    throw new RangeError(
      `${where}: learningRate ${learningRate} was given next to a backend with its own learning rate (${typeof own === 'number' ? own : 'a schedule'}); give it once, to the backend`,
    );
  }
  if (own === undefined && learningRate !== undefined && !use.methodUsesLearningRate) {
    throw new RangeError(
      `${where}: learningRate ${learningRate} would be unused: it sets the default Adam backend's rate, and your backend sets its own`,
    );
  }
  const rate = own ?? learningRate;
  const config = (backend as Partial<Optimizer>).config ?? 'custom';
  return { backend, learningRate: rate, config: { backend: config, learningRate: typeof rate === 'number' ? rate : null } };
}

/**
 * The error an optimizer rebuilt from a saved configuration raises at its first step when the
 * configuration could not hold part of it (a backend transform or a switch rule of your own).
 */
export function notRebuildable(where: string, what: string): Error {
  return new Error(
    `${where}: this optimizer was rebuilt from a saved configuration, which cannot hold ${what}; ` +
      'build the optimizer yourself with it and restore the saved state: ' +
      'const saved = await loaded.optimizer.getWeights(); const optimizer = new ...(model, options); await optimizer.setWeights(saved)',
  );
}

/**
 * The backend a saved configuration describes (`ResolvedBackend.config.backend`): the named
 * optimizer rebuilt with `firstOrderFromConfig`, or, for `'custom'` (a transform of your own,
 * which a configuration cannot hold), a transform whose `init` throws {@link notRebuildable}'s
 * error at the first step, so that loading a saved model still succeeds and says what to do.
 */
export function backendFromConfig(where: string, config: FirstOrderConfig | 'custom'): Transform<unknown> {
  if (config !== 'custom') return firstOrderFromConfig(config);
  return {
    init: () => {
      throw notRebuildable(where, 'a backend transform of your own');
    },
    update: (updates, state) => ({ updates, state }),
  };
}
