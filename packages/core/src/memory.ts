import * as tf from '@tensorflow/tfjs-core';

import type { Transform, TransformResult, TensorMap, UpdateContext } from './transform';

/**
 * Every tensor reachable in a tree of plain objects and arrays (a transform's state, a map of
 * updates). Numbers, strings and other leaves are skipped; each tensor is listed once.
 */
export function tensorsIn(tree: unknown): tf.Tensor[] {
  const found = new Map<number, tf.Tensor>();
  const visit = (node: unknown): void => {
    if (node instanceof tf.Tensor) {
      found.set(node.id, node);
    } else if (Array.isArray(node)) {
      node.forEach(visit);
    } else if (node !== null && typeof node === 'object') {
      Object.values(node).forEach(visit);
    }
  };
  visit(tree);
  return [...found.values()];
}

/**
 * Disposes the tensors of `previous` that `next` no longer holds: what a step replaced.
 * Tensors shared by both (state a step left unchanged) survive.
 */
export function disposeReplaced(previous: unknown, next: unknown): void {
  const kept = new Set(tensorsIn(next).map((t) => t.id));
  for (const t of tensorsIn(previous)) {
    if (!kept.has(t.id) && !t.isDisposed) t.dispose();
  }
}

/**
 * Runs one `transform.update` the way every adapter should: inside `tf.tidy`, so intermediate
 * tensors are freed, keeping only the returned updates and state; then disposes the tensors of
 * the old state that the new state replaced. The input `updates` are left to the caller.
 */
export function applyTransform<S>(
  transform: Transform<S>,
  updates: TensorMap,
  state: S,
  context?: UpdateContext,
): TransformResult<S> {
  const result = tf.tidy(() => {
    const r = transform.update(updates, state, context);
    return { updates: r.updates, state: r.state } as unknown as tf.TensorContainer;
  }) as unknown as TransformResult<S>;
  disposeReplaced(state, result.state);
  return result;
}
