import * as tf from '@tensorflow/tfjs-core';

import { tensorsIn } from './memory';
import { selectByScalar } from './select';
import type { TensorMap, Transform, UpdateContext } from './transform';
import { checkOneOf, finiteFlag } from './validation';

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
  /**
   * With `decisions: 'device'`: `[skipped, refused, lastSkipped]` counted on the device (float32),
   * on top of the numbers above (which then stay as they were at `init`). Read them with
   * {@link skipCounts}.
   */
  readonly deviceCounts?: tf.Tensor1D;
}

/** Where {@link skipNonFinite} decides whether a step is refused. */
export type GuardDecisions = 'read-back' | 'device';

/** Options of {@link skipNonFinite}. */
export interface SkipNonFiniteOptions {
  /**
   * `'read-back'` (default): two scalar flags are read back per step and a refused step does not
   * run the inner transform's bookkeeping at all. `'device'`: nothing is read back — the decision
   * stays a tensor and every state tensor and update is chosen on the device between the step's
   * and the previous one (what a GPU backend needs: a read-back there stalls the pipeline, and
   * WebGPU cannot read synchronously at all). A refused step then leaves every tensor of the
   * state as it was but, unlike `'read-back'`, lets the inner state's plain numbers advance (step
   * counters such as Adam's `t`); the counts live on the device until {@link skipCounts} reads them.
   */
  readonly decisions?: GuardDecisions;
}

/** The counts of a {@link skipNonFinite} state as numbers. */
export interface SkipCounts {
  readonly skippedSteps: number;
  readonly refusedResults: number;
  readonly lastSkipped: boolean;
}

/** The counts of `state`, `device` its device counters' values (with `decisions: 'device'`). */
function countsOf(state: SkipNonFiniteState<unknown>, device: ArrayLike<number> | undefined): SkipCounts {
  if (device === undefined) return { skippedSteps: state.skippedSteps, refusedResults: state.refusedResults, lastSkipped: state.lastSkipped };
  return { skippedSteps: state.skippedSteps + (device[0] as number), refusedResults: state.refusedResults + (device[1] as number), lastSkipped: device[2] === 1 };
}

/**
 * The counts of a {@link skipNonFinite} state as numbers: with `decisions: 'device'` this reads
 * back its device counters (one synchronous read-back, when you ask; on webgpu use
 * {@link skipCountsAsync}); otherwise it only copies them.
 */
export function skipCounts(state: SkipNonFiniteState<unknown>): SkipCounts {
  return countsOf(state, state.deviceCounts?.dataSync());
}

/**
 * {@link skipCounts} with an asynchronous read-back (`await tensor.data()`): what WebGPU needs,
 * where a synchronous read is slow everywhere and fails on some devices.
 */
export async function skipCountsAsync(state: SkipNonFiniteState<unknown>): Promise<SkipCounts> {
  return countsOf(state, await state.deviceCounts?.data());
}

/**
 * `flag ? next : previous` through a state tree, on the device: a tensor the step replaced is
 * chosen entry by entry (`selectByScalar`) when the previous state has one of the same shape and
 * dtype at the same place; tensors the step kept, tensors new to the tree and every other leaf
 * (numbers, strings) are the step's.
 */
function chooseState(flag: tf.Scalar, previous: unknown, next: unknown): unknown {
  if (next === previous) return next;
  if (next instanceof tf.Tensor) {
    const old = previous instanceof tf.Tensor ? previous : undefined;
    const comparable = old !== undefined && !old.isDisposed && old.dtype === next.dtype && tf.util.arraysEqual(old.shape, next.shape);
    return comparable ? selectByScalar(flag, next, old) : next;
  }
  if (Array.isArray(next)) return next.map((item, i) => chooseState(flag, Array.isArray(previous) ? previous[i] : undefined, item));
  if (next !== null && typeof next === 'object' && Object.getPrototypeOf(next) === Object.prototype) {
    const before = previous !== null && typeof previous === 'object' ? (previous as Record<string, unknown>) : {};
    return Object.fromEntries(Object.entries(next).map(([key, value]) => [key, chooseState(flag, before[key], value)]));
  }
  if (tensorsIn(next).length > 0) {
    const kind = (next as object).constructor?.name ?? 'object';
    throw new TypeError(`skipNonFinite (decisions 'device'): the state holds tensors inside a ${kind}; only plain objects and arrays can be chosen on the device`);
  }
  return next;
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
export function skipNonFinite<S>(transform: Transform<S>, options: SkipNonFiniteOptions = {}): Transform<SkipNonFiniteState<S>> {
  const decisions = checkOneOf('skipNonFinite', 'decisions', options.decisions ?? 'read-back', ['read-back', 'device'] as const);
  if (decisions === 'device') return skipNonFiniteOnDevice(transform);
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

/** {@link skipNonFinite} with `decisions: 'device'`: the same checks, nothing read back. */
function skipNonFiniteOnDevice<S>(transform: Transform<S>): Transform<SkipNonFiniteState<S>> {
  return {
    init: (params) => ({ inner: transform.init(params), skippedSteps: 0, refusedResults: 0, lastSkipped: false, deviceCounts: tf.zeros([3]) as tf.Tensor1D }),
    update: (updates, state, context) => {
      const gradientsFinite = finiteFlag(Object.values(updates));
      // The inner transform runs whatever the gradients hold; what it wrote is discarded below if refused.
      const result = transform.update(updates, state.inner, context);
      const resultFinite = resultFlag(state.inner, result.updates, result.state, context);
      const taken = tf.logicalAnd(gradientsFinite, resultFinite) as tf.Scalar;
      const chosenUpdates: Record<string, tf.Tensor> = {};
      for (const [name, u] of Object.entries(result.updates)) chosenUpdates[name] = selectByScalar(taken, u, tf.zerosLike(u));
      const skipped = tf.sub(1, tf.cast(taken, 'float32'));
      const refused = tf.cast(tf.logicalAnd(gradientsFinite, tf.logicalNot(resultFinite)), 'float32');
      const counts = state.deviceCounts ?? (tf.zeros([3]) as tf.Tensor1D);
      // [skipped, refused] accumulate; lastSkipped is replaced.
      const deviceCounts = tf.add(tf.mul(counts, tf.tensor1d([1, 1, 0])), tf.stack([skipped, refused, skipped]));
      return {
        updates: chosenUpdates,
        state: {
          inner: chooseState(taken, state.inner, result.state) as S,
          skippedSteps: state.skippedSteps,
          refusedResults: state.refusedResults,
          lastSkipped: state.lastSkipped,
          deviceCounts: deviceCounts as tf.Tensor1D,
        },
      };
    },
  };
}
