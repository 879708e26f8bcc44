import * as tf from '@tensorflow/tfjs-core';

import { type Hyperparameter, resolveHyperparameter } from './schedule';

/** Tensors keyed by variable name: a model's parameters, their gradients, or the updates. */
export type TensorMap = Readonly<Record<string, tf.Tensor>>;

/**
 * What a transform may read besides the updates and its own state on one step (optax's
 * `extra_args`). Everything is optional; a transform that needs an entry says so and throws a
 * clear error when it is missing.
 */
export interface UpdateContext {
  /** The parameters the updates will be applied to (weight decay, LAMB's trust ratio). */
  readonly params?: TensorMap;
  /** The loss of the step that produced the gradients, when the caller knows it. */
  readonly loss?: number;
  /** Data a specific transform needs, e.g. captured per-layer rank-1 statistics. */
  readonly extras?: Readonly<Record<string, unknown>>;
}

/** The result of one {@link Transform.update}: the transformed updates and the next state. */
export interface TransformResult<S> {
  readonly updates: TensorMap;
  readonly state: S;
}

/**
 * A gradient transformation, as in optax: two pure functions.
 *
 * - `init(params)` builds the initial state: a plain object (or array) of tensors and numbers.
 * - `update(updates, state, context)` returns the transformed updates and the next state.
 *
 * The contract on memory: `update` never disposes its inputs and may return input tensors as
 * they are; callers run it inside `tf.tidy` and dispose the state it replaced, which is what
 * {@link applyTransform} does. `update` is synchronous, so it can run in a tidy; anything
 * asynchronous (communication) happens before it, outside.
 */
export interface Transform<S = unknown> {
  readonly init: (params: TensorMap) => S;
  readonly update: (updates: TensorMap, state: S, context?: UpdateContext) => TransformResult<S>;
}

/** The state type of a transform. */
export type StateOf<T> = T extends Transform<infer S> ? S : never;

/**
 * Composes transforms left to right: the updates of each feed the next, and the state is the
 * tuple of the parts' states (optax's `chain`). `chain(a, b).update(u)` equals
 * `b.update(a.update(u).updates)`.
 */
// Transform<S> is invariant in S, so the constraint has to accept any state type.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function chain<const T extends readonly Transform<any>[]>(
  ...transforms: T
): Transform<{ -readonly [K in keyof T]: StateOf<T[K]> }> {
  type ChainState = { -readonly [K in keyof T]: StateOf<T[K]> };
  const parts = transforms as unknown as readonly Transform<unknown>[];
  return {
    init: (params) => parts.map((t) => t.init(params)) as unknown as ChainState,
    update: (updates, state, context) => {
      const states = state as unknown as readonly unknown[];
      if (states.length !== parts.length) {
        throw new TypeError(
          `chain: state holds ${states.length} entries for ${parts.length} transforms`,
        );
      }
      let current = updates;
      const next: unknown[] = [];
      parts.forEach((t, i) => {
        const result = t.update(current, states[i], context);
        current = result.updates;
        next.push(result.state);
      });
      return { updates: current, state: next as unknown as ChainState };
    },
  };
}

/**
 * Multiplies every update by a constant or scheduled factor: `u ← s(t)·u`, where `t` counts this
 * transform's updates (optax's `scale_by_schedule`). A learning rate is `scaleBy(-lr)`.
 */
export function scaleBy(factor: Hyperparameter): Transform<{ step: number }> {
  return {
    init: () => ({ step: 0 }),
    update: (updates, state) => {
      const value = resolveHyperparameter(factor, state.step, 'scaleBy factor');
      const scaled: Record<string, tf.Tensor> = {};
      for (const [name, u] of Object.entries(updates)) scaled[name] = tf.mul(u, value);
      return { updates: scaled, state: { step: state.step + 1 } };
    },
  };
}
