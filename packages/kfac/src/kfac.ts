import { type SkipNonFiniteState, type Transform, chain, skipNonFinite } from '@mkor/core';

import { type KfacOptions, type KfacPreconditionerState, type KfacStepMetrics, kfacPreconditioner } from './preconditioner';
import type { LayerSource } from './second-order-parts';

/** Options of {@link kfac}: the preconditioner's, plus its layers and the backend. */
export interface KfacTransformOptions extends KfacOptions {
  /** The second-order layers (e.g. `prepareModel(model, { covariance: true }).secondOrder`), or a function returning them. */
  readonly layers: LayerSource;
  /** The first-order transform that turns the preconditioned gradients into parameter deltas, e.g. `sgd(...)`, `adam(...)`. */
  readonly backend: Transform<unknown>;
}

/** The state of {@link kfac}: the NaN guard around `[preconditioner, backend]`. */
export type KfacState = SkipNonFiniteState<[KfacPreconditionerState, unknown]>;

/** The composed KFAC transform, with accessors for what its state holds. */
export interface KfacTransform extends Transform<KfacState> {
  readonly preconditionerState: (state: KfacState) => KfacPreconditionerState;
  /** The latest step's metrics, or null (before the first step, or without `collectMetrics`). */
  readonly metrics: (state: KfacState) => KfacStepMetrics | null;
}

/**
 * KFAC as one transform: `skipNonFinite(chain(kfacPreconditioner(layers, options), backend))`.
 * A step whose gradients hold NaN or Inf is skipped whole (factors, inverses, moments and
 * weights are left as they were) and counted. Statistics, with covariances, come in
 * `context.extras.statistics`.
 */
export function kfac(options: KfacTransformOptions): KfacTransform {
  const { layers, backend, ...preconditionerOptions } = options;
  if (backend === undefined || typeof backend.update !== 'function') {
    throw new TypeError('kfac: backend must be a first-order Transform, e.g. sgd({ learningRate: 0.1 })');
  }
  const composed = skipNonFinite(chain(kfacPreconditioner(layers, preconditionerOptions), backend));
  return {
    init: composed.init as KfacTransform['init'],
    update: composed.update as KfacTransform['update'],
    preconditionerState: (state) => state.inner[0],
    metrics: (state) => state.inner[0].metrics,
  };
}
