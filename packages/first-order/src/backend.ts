import type { Transform } from '@mkor/core';

import { adam } from './optimizers';

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
  /** The learning rate given, or {@link DEFAULT_LEARNING_RATE}. */
  readonly learningRate: number;
  /**
   * What the optimizer's `getConfig` reports of these options: the backend as `'adam'` (the
   * default) or `'custom'` (a transform is not serialisable), and the learning rate.
   */
  readonly config: { readonly backend: 'adam' | 'custom'; readonly learningRate: number };
}

/**
 * Checks an optimizer's {@link BackendOptions} and fills in the defaults: the learning rate must
 * be a positive finite number (a `RangeError` naming `where` otherwise, e.g. `KfacOptimizer:
 * learningRate must be a positive finite number, got 0`), and without a `backend` the backend is
 * `adam({ learningRate })`. The backend given is passed on as it is (the transform that composes
 * it checks it).
 */
export function resolveBackend(where: string, options: BackendOptions): ResolvedBackend {
  const { backend, learningRate } = options;
  if (learningRate !== undefined && !(typeof learningRate === 'number' && Number.isFinite(learningRate) && learningRate > 0)) {
    throw new RangeError(`${where}: learningRate must be a positive finite number, got ${String(learningRate)}`);
  }
  const rate = learningRate ?? DEFAULT_LEARNING_RATE;
  return {
    backend: backend ?? adam({ learningRate: rate }),
    learningRate: rate,
    config: { backend: backend === undefined ? 'adam' : 'custom', learningRate: rate },
  };
}
