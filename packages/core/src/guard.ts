import * as tf from '@tensorflow/tfjs-core';

import type { Transform } from './transform';

/** The state of {@link skipNonFinite}: the inner state and how many steps were skipped. */
export interface SkipNonFiniteState<S> {
  readonly inner: S;
  readonly skippedSteps: number;
  /** Whether the latest step was skipped. */
  readonly lastSkipped: boolean;
}

/**
 * Wraps a transform so that a step whose incoming updates (gradients) hold NaN or ±Inf is
 * skipped: the inner transform is not run, its state is returned untouched (moments and factors
 * are not corrupted), the outgoing updates are zeros (so `w + u` leaves the weights as they are),
 * and the skip is counted. Costs one reduction and one scalar read-back per step.
 */
export function skipNonFinite<S>(transform: Transform<S>): Transform<SkipNonFiniteState<S>> {
  return {
    init: (params) => ({ inner: transform.init(params), skippedSteps: 0, lastSkipped: false }),
    update: (updates, state, context) => {
      const tensors = Object.values(updates);
      const probe = tf.tidy(() =>
        tensors.length === 0 ? tf.scalar(0) : tf.addN(tensors.map((u) => tf.sum(tf.mul(u, 0)))),
      );
      const finite = (probe.dataSync()[0] as number) === 0;
      probe.dispose();
      if (!finite) {
        const zeros: Record<string, tf.Tensor> = {};
        for (const [name, u] of Object.entries(updates)) zeros[name] = tf.zerosLike(u);
        return {
          updates: zeros,
          state: { inner: state.inner, skippedSteps: state.skippedSteps + 1, lastSkipped: true },
        };
      }
      const result = transform.update(updates, state.inner, context);
      return {
        updates: result.updates,
        state: { inner: result.state, skippedSteps: state.skippedSteps, lastSkipped: false },
      };
    },
  };
}
