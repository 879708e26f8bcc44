import type { TensorMap } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';

/**
 * Applies final updates to variables in place: `w ← w + u` for every entry of `updates` (the
 * updates already carry the learning rate's minus sign). Every update is checked first (a
 * variable of that name, the same shape), so a bad map changes nothing. The updates are not
 * disposed.
 *
 * ```ts
 * const { value, grads } = tf.variableGrads(() => loss(params));
 * const result = applyTransform(optimizer, grads, state, { params, loss: value.dataSync()[0] });
 * applyUpdates(params, result.updates);
 * ```
 */
export function applyUpdates(params: Readonly<Record<string, tf.Variable>>, updates: TensorMap): void {
  const where = 'applyUpdates';
  for (const [name, u] of Object.entries(updates)) {
    const variable = params[name];
    if (!(variable instanceof tf.Variable)) {
      throw new RangeError(`${where}: there is no tf.Variable named '${name}' in params`);
    }
    if (!(u instanceof tf.Tensor) || u.isDisposed) {
      throw new TypeError(`${where}: the update of '${name}' must be a live tf.Tensor`);
    }
    if (u.shape.join(',') !== variable.shape.join(',')) {
      throw new RangeError(
        `${where}: the update of '${name}' has shape [${u.shape.join(', ')}], the variable [${variable.shape.join(', ')}]`,
      );
    }
  }
  tf.tidy(() => {
    for (const [name, u] of Object.entries(updates)) {
      const variable = params[name] as tf.Variable;
      variable.assign(tf.add(variable, u));
    }
  });
}
