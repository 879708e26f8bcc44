import * as tf from '@tensorflow/tfjs-core';

import { tensorsIn } from './memory';
import type { TensorMap, Transform, UpdateContext } from './transform';
import { finiteFlag } from './validation';

/** The state of {@link skipNonFinite}: the inner state and what was refused. */
export interface SkipNonFiniteState<S> {
  readonly inner: S;
  /** Steps refused in all: those with non-finite gradients and those counted in `refusedResults`. */
  readonly skippedSteps: number;
  /**
   * Steps refused although their gradients were finite, because the step would have written NaN
   * or ±Inf: into an update, into the new state (moments, factors, scale factors) or, when
   * `context.params` is given, into a parameter (`w + u` overflowing). Part of `skippedSteps`.
   */
  readonly refusedResults: number;
  /** Whether the latest step was refused. */
  readonly lastSkipped: boolean;
}

/** One read-back of a bool scalar flag (disposed). */
function readFlag(flag: tf.Scalar): boolean {
  const value = flag.dataSync()[0] as number;
  flag.dispose();
  return value === 1;
}

/** Zero updates of the same shapes: `w + 0` leaves every parameter as it is. */
function zeroUpdates(updates: TensorMap): Record<string, tf.Tensor> {
  const zeros: Record<string, tf.Tensor> = {};
  for (const [name, u] of Object.entries(updates)) zeros[name] = tf.zerosLike(u);
  return zeros;
}

/**
 * Whether a step's result writes only finite values: every update, every state tensor the step
 * created (tensors it kept from the previous state were checked when they were written), and
 * `w + u` for every parameter in `context.params`.
 */
function resultFlag(previousState: unknown, updates: TensorMap, state: unknown, context: UpdateContext | undefined): tf.Scalar {
  const old = new Set(tensorsIn(previousState).map((t) => t.id));
  const written = tensorsIn(state).filter((t) => !old.has(t.id));
  const params = context?.params ?? {};
  const moved = Object.entries(updates).flatMap(([name, u]) => {
    const w = params[name];
    return w === undefined ? [] : [[w, u] as const];
  });
  return finiteFlag([...Object.values(updates), ...written], moved);
}

/**
 * Wraps a transform so that no step writes a non-finite value into the parameters or the
 * transform's state, whatever the gradients' magnitude:
 *
 * - a step whose gradients hold NaN or ±Inf is skipped before the inner transform runs;
 * - a step with finite gradients whose result is not finite — an update, a state tensor it wrote
 *   (e.g. Adam's second moment overflowing to +Inf for gradients above ≈ 1.8e19, a KL-clip factor
 *   becoming NaN), or `w + u` for a parameter in `context.params` — is refused after it ran.
 *
 * Either way the inner state is returned untouched (moments and factors are not corrupted), the
 * outgoing updates are zeros (so `w + u` leaves the weights as they are), and the step is counted
 * (`skippedSteps`; `refusedResults` for the second kind). Costs two passes over what it checks
 * (one fused kernel each where the backend has `FUSED_KERNELS.finiteFlag`) and two scalar
 * read-backs per step (one when the gradients are not finite).
 */
export function skipNonFinite<S>(transform: Transform<S>): Transform<SkipNonFiniteState<S>> {
  return {
    init: (params) => ({ inner: transform.init(params), skippedSteps: 0, refusedResults: 0, lastSkipped: false }),
    update: (updates, state, context) => {
      const refuse = (refusedResults: number): { updates: TensorMap; state: SkipNonFiniteState<S> } => ({
        updates: zeroUpdates(updates),
        state: { inner: state.inner, skippedSteps: state.skippedSteps + 1, refusedResults, lastSkipped: true },
      });
      if (!readFlag(finiteFlag(Object.values(updates)))) return refuse(state.refusedResults);
      const result = transform.update(updates, state.inner, context);
      if (!readFlag(resultFlag(state.inner, result.updates, result.state, context))) {
        // Free what the refused step created; the inputs and the previous state stay the caller's.
        const kept = new Set([...tensorsIn(state.inner), ...Object.values(updates)].map((t) => t.id));
        tf.dispose(tensorsIn(result).filter((t) => !kept.has(t.id)));
        return refuse(state.refusedResults + 1);
      }
      return {
        updates: result.updates,
        state: { inner: result.state, skippedSteps: state.skippedSteps, refusedResults: state.refusedResults, lastSkipped: false },
      };
    },
  };
}
