import { type KfacOptions, type KfacPreconditionerState, kfacPreconditioner } from './preconditioner';
import { type SecondOrderState, type SecondOrderTransform, type SecondOrderTransformOptions, withBackend } from './second-order-parts';

/** Options of {@link kfac}: the preconditioner's, plus its layers (captured with `{ covariance: true }`) and the backend. */
export interface KfacTransformOptions extends KfacOptions, SecondOrderTransformOptions {}

/** The state of {@link kfac}: the NaN guard around `[preconditioner, backend]`. */
export type KfacState = SecondOrderState<KfacPreconditionerState>;

/** The composed KFAC transform, with accessors for what its state holds (`preconditionerState`, `metrics`). */
export type KfacTransform = SecondOrderTransform<KfacPreconditionerState>;

/**
 * KFAC as one transform: `skipNonFinite(chain(kfacPreconditioner(layers, options), backend))`
 * (see {@link withBackend}). A step whose gradients hold NaN or Inf is skipped whole (factors,
 * inverses, moments and weights are left as they were) and counted. Statistics, with
 * covariances, come in `context.extras.statistics`.
 */
export function kfac(options: KfacTransformOptions): KfacTransform {
  return withBackend('kfac', kfacPreconditioner, options);
}
