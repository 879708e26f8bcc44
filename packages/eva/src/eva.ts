import { type SecondOrderState, type SecondOrderTransform, type SecondOrderTransformOptions, withBackend } from '@mkor/kfac';

import { type EvaOptions, type EvaPreconditionerState, evaPreconditioner } from './preconditioner';

/** Options of {@link eva}: the preconditioner's, plus its layers and the backend. */
export interface EvaTransformOptions extends EvaOptions, SecondOrderTransformOptions {}

/** The state of {@link eva}: the NaN guard around `[preconditioner, backend]`. */
export type EvaState = SecondOrderState<EvaPreconditionerState>;

/** The composed Eva transform, with accessors for what its state holds (`preconditionerState`, `metrics`). */
export type EvaTransform = SecondOrderTransform<EvaPreconditionerState>;

/**
 * Eva as one transform: `skipNonFinite(chain(evaPreconditioner(layers, options), backend))`
 * (see `withBackend` from `@mkor/kfac`). A step whose gradients hold NaN or Inf is skipped whole
 * and counted. Statistics come in `context.extras.statistics`.
 */
export function eva(options: EvaTransformOptions): EvaTransform {
  return withBackend('eva', evaPreconditioner, options);
}
