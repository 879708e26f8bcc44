import { type SkipNonFiniteState, type Transform, chain, skipNonFinite } from '@mkor/core';
import type { LayerSource } from '@mkor/kfac';

import { type EvaOptions, type EvaPreconditionerState, type EvaStepMetrics, evaPreconditioner } from './preconditioner';

/** Options of {@link eva}: the preconditioner's, plus its layers and the backend. */
export interface EvaTransformOptions extends EvaOptions {
  /** The second-order layers (e.g. `prepareModel(model).secondOrder`), or a function returning them. */
  readonly layers: LayerSource;
  /** The first-order transform that turns the preconditioned gradients into parameter deltas. */
  readonly backend: Transform<unknown>;
}

/** The state of {@link eva}: the NaN guard around `[preconditioner, backend]`. */
export type EvaState = SkipNonFiniteState<[EvaPreconditionerState, unknown]>;

/** The composed Eva transform, with accessors for what its state holds. */
export interface EvaTransform extends Transform<EvaState> {
  readonly preconditionerState: (state: EvaState) => EvaPreconditionerState;
  /** The latest step's metrics, or null (before the first step, or without `collectMetrics`). */
  readonly metrics: (state: EvaState) => EvaStepMetrics | null;
}

/**
 * Eva as one transform: `skipNonFinite(chain(evaPreconditioner(layers, options), backend))`.
 * A step whose gradients hold NaN or Inf is skipped whole and counted.
 */
export function eva(options: EvaTransformOptions): EvaTransform {
  const { layers, backend, ...preconditionerOptions } = options;
  if (backend === undefined || typeof backend.update !== 'function') {
    throw new TypeError('eva: backend must be a first-order Transform, e.g. sgd({ learningRate: 0.1 })');
  }
  const composed = skipNonFinite(chain(evaPreconditioner(layers, preconditionerOptions), backend));
  return {
    init: composed.init as EvaTransform['init'],
    update: composed.update as EvaTransform['update'],
    preconditionerState: (state) => state.inner[0],
    metrics: (state) => state.inner[0].metrics,
  };
}
