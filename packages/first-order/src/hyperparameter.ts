import { type Hyperparameter, type NumberBounds, checkNumber, resolveHyperparameter } from '@mkor/core';
import type * as tf from '@tensorflow/tfjs-core';

/**
 * Validates a hyperparameter when a transform is built: a constant must be a finite number within
 * `bounds`; a schedule must be a function (its values are checked at every step by
 * {@link resolveWithin}). Returns the value unchanged.
 */
export function checkHyperparameter(
  where: string,
  name: string,
  value: unknown,
  bounds: NumberBounds,
): Hyperparameter {
  if (typeof value === 'function') return value as Hyperparameter;
  return checkNumber(where, name, value, bounds);
}

/**
 * The value of a (checked) hyperparameter at `step`, with a schedule's value held to the same
 * `bounds` as a constant, e.g. `adam: learningRate at step 12 must be [0, ∞), got -0.1`.
 */
export function resolveWithin(
  where: string,
  name: string,
  value: Hyperparameter,
  step: number,
  bounds: NumberBounds,
): number {
  const resolved = resolveHyperparameter(value, step, `${where}: ${name}`);
  return typeof value === 'number' ? resolved : checkNumber(where, `${name} at step ${step}`, resolved, bounds);
}

/** One tensor per entry of `params`, built by `make` (e.g. zeros for a moment estimate). */
export function perParameter(
  params: Readonly<Record<string, tf.Tensor>>,
  make: (param: tf.Tensor) => tf.Tensor,
): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  for (const [name, param] of Object.entries(params)) out[name] = make(param);
  return out;
}

/**
 * The entry `name` of a per-parameter map, or a `RangeError` saying which map lacks it (an
 * update for a variable the transform was not initialised with, or parameters not passed).
 */
export function entryFor<T>(where: string, what: string, map: Readonly<Record<string, T>>, name: string): T {
  const entry = map[name];
  if (entry === undefined) {
    throw new RangeError(`${where}: ${what} has no entry '${name}' (was the state initialised with this variable?)`);
  }
  return entry;
}

/** Throws a `RangeError` when two tensors that must match element-wise have different shapes. */
export function checkSameShape(where: string, name: string, a: tf.Tensor, b: tf.Tensor): void {
  if (a.shape.join(',') !== b.shape.join(',')) {
    throw new RangeError(
      `${where}: the update of '${name}' has shape [${a.shape.join(', ')}], expected [${b.shape.join(', ')}]`,
    );
  }
}
