import * as tf from '@tensorflow/tfjs-core';

import { addAll } from './add-all';
import { hasFusedKernel, runFusedKernel } from './fused';

import type { Hyperparameter, Schedule } from './schedule';

/** Bounds for {@link checkNumber}; a bound left out is not checked. */
export interface NumberBounds {
  /** Smallest allowed value (inclusive unless `minExclusive`). */
  readonly min?: number;
  /** Largest allowed value (inclusive unless `maxExclusive`). */
  readonly max?: number;
  readonly minExclusive?: boolean;
  readonly maxExclusive?: boolean;
  /** Require a whole number. */
  readonly integer?: boolean;
}

function describeInterval(b: NumberBounds): string {
  const lo = b.min === undefined ? '(-∞' : `${b.minExclusive ? '(' : '['}${b.min}`;
  const hi = b.max === undefined ? '∞)' : `${b.max}${b.maxExclusive ? ')' : ']'}`;
  return `${b.integer ? 'an integer in ' : ''}${lo}, ${hi}`;
}

/**
 * Checks a hyperparameter: a finite number within `bounds`. Returns it, or throws a
 * `RangeError` such as `updateInverseFactor: gamma must be in (0, 1), got 1.5`.
 */
export function checkNumber(where: string, name: string, value: unknown, bounds: NumberBounds = {}): number {
  const ok =
    typeof value === 'number' &&
    Number.isFinite(value) &&
    (bounds.min === undefined || (bounds.minExclusive ? value > bounds.min : value >= bounds.min)) &&
    (bounds.max === undefined || (bounds.maxExclusive ? value < bounds.max : value <= bounds.max)) &&
    (!bounds.integer || Number.isInteger(value));
  if (!ok) {
    throw new RangeError(`${where}: ${name} must be ${describeInterval(bounds)}, got ${String(value)}`);
  }
  return value as number;
}

/**
 * Checks a hyperparameter that may change during training: a number within `bounds` (checked
 * now), or a schedule `(step) => number` (whose values {@link hyperparameterAt} checks at each
 * use). Returns it; a `TypeError` for anything else.
 */
export function checkHyperparameter(where: string, name: string, value: unknown, bounds: NumberBounds = {}): Hyperparameter {
  if (typeof value === 'function') return value as Schedule;
  if (typeof value !== 'number') {
    throw new TypeError(`${where}: ${name} must be a number or a schedule (step) => number, got ${value === null ? 'null' : typeof value}`);
  }
  return checkNumber(where, name, value, bounds);
}

/**
 * The value of a hyperparameter at `step`, within `bounds`: a `RangeError` such as
 * `mkorBlock: gamma must be in (0, 1), got 1.2 (from its schedule at step 40)`.
 */
export function hyperparameterAt(where: string, name: string, value: Hyperparameter, step: number, bounds: NumberBounds = {}): number {
  if (typeof value === 'number') return value;
  const resolved = value(step);
  try {
    return checkNumber(where, name, resolved, bounds);
  } catch (error) {
    throw new RangeError(`${(error as Error).message} (from its schedule at step ${step})`);
  }
}

/**
 * Refuses options this function does not know, naming the first one, and for a renamed option
 * its new name: `mkor: unknown option 'rescale' (renamed 'scaling')`. `undefined` values count.
 */
export function checkKnownOptions(
  where: string,
  options: object,
  known: readonly string[],
  renamed: Readonly<Record<string, string>> = {},
): void {
  const allowed = new Set(known);
  for (const key of Object.keys(options)) {
    if (allowed.has(key)) continue;
    const hint = renamed[key] === undefined ? `; known: ${[...allowed].sort().join(', ')}` : ` (renamed '${renamed[key]}')`;
    throw new RangeError(`${where}: unknown option '${key}'${hint}`);
  }
}

/** Checks that `value` is one of `allowed`; throws a `RangeError` listing them otherwise. */
export function checkOneOf<const T extends string>(
  where: string,
  name: string,
  value: unknown,
  allowed: readonly T[],
): T {
  if (!allowed.includes(value as T)) {
    throw new RangeError(
      `${where}: ${name} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${String(value)}`,
    );
  }
  return value as T;
}

/**
 * Throws a `TypeError` naming `where` and `name` unless `t` is a live float32 tensor (what the
 * kernels of these packages compute in): `stabilize: inverse must be a float32 tensor, got dtype int32`.
 */
export function checkFloat32(where: string, name: string, t: unknown): asserts t is tf.Tensor {
  if (!(t instanceof tf.Tensor)) throw new TypeError(`${where}: ${name} must be a tf.Tensor, got ${t === null ? 'null' : typeof t}`);
  if (t.isDisposed) throw new TypeError(`${where}: ${name} has been disposed`);
  if (t.dtype !== 'float32') throw new TypeError(`${where}: ${name} must be a float32 tensor, got dtype ${t.dtype}`);
}

/** Checks that `t` is a tensor of the given rank; returns its shape. */
export function checkRank(where: string, name: string, t: unknown, rank: number): number[] {
  if (!(t instanceof tf.Tensor)) {
    throw new TypeError(`${where}: ${name} must be a tf.Tensor, got ${typeof t}`);
  }
  if (t.isDisposed) throw new TypeError(`${where}: ${name} has been disposed`);
  if (t.rank !== rank) {
    throw new RangeError(`${where}: ${name} must have rank ${rank}, got shape [${t.shape.join(', ')}]`);
  }
  return t.shape;
}

/** Checks that `t` is a square matrix `[d, d]`; returns d. */
export function checkSquareMatrix(where: string, name: string, t: unknown): number {
  const [rows, cols] = checkRank(where, name, t, 2) as [number, number];
  if (rows !== cols) {
    throw new RangeError(`${where}: ${name} must be square, got shape [${rows}, ${cols}]`);
  }
  return rows;
}

/** Checks that `t` is a vector of length `d` (shape `[d]`). */
export function checkVector(where: string, name: string, t: unknown, d: number): void {
  const [length] = checkRank(where, name, t, 1) as [number];
  if (length !== d) {
    throw new RangeError(`${where}: ${name} must have length ${d}, got shape [${length}]`);
  }
}

/**
 * Whether every entry of `t` is finite. Costs one reduction and one read-back of a scalar:
 * `Σ 0·tᵢ` is 0 exactly when no entry is NaN or ±Inf.
 */
export function allFinite(t: tf.Tensor): boolean {
  const flag = finiteFlag([t]);
  const value = flag.dataSync()[0] as number;
  flag.dispose();
  return value === 1;
}

/**
 * Whether every entry of every tensor — and of every sum `a + b` in `sums`, as float32 adds it —
 * is finite, as a bool scalar that stays on the device (nothing is read back). True for empty
 * lists. Tensors of other dtypes than float32 are always finite. The tensors are not disposed.
 *
 * Where the backend registers the fused kernel (`FUSED_KERNELS.finiteFlag`, e.g. the wasm
 * backend with `@mkor/wasm-kernels`) this is one pass over the data; elsewhere `Σ 0·xᵢ`, which is
 * 0 exactly when no entry is NaN or ±Inf, per tensor.
 *
 * @param sums - pairs of one shape whose float32 sum is checked without being kept (e.g. a
 *   parameter and its update: does `w + u` overflow?).
 */
export function finiteFlag(tensors: readonly tf.Tensor[], sums: readonly (readonly [tf.Tensor, tf.Tensor])[] = []): tf.Scalar {
  return tf.tidy(() => {
    const checked = tensors.filter((t) => t.dtype === 'float32');
    const pairs = sums.filter(([a, b]) => a.dtype === 'float32' && b.dtype === 'float32');
    if (checked.length === 0 && pairs.length === 0) return tf.scalar(true, 'bool');
    if (hasFusedKernel('finiteFlag')) {
      const inputs: Record<string, tf.Tensor> = {};
      [...checked, ...pairs.flat()].forEach((t, i) => (inputs[`x${i}`] = t));
      return runFusedKernel<tf.Scalar>('finiteFlag', inputs, { sums: pairs.length });
    }
    const probes = [...checked, ...pairs.map(([a, b]) => tf.add(a, b))].map((t) => tf.sum(tf.mul(t, tf.scalar(0))));
    const total = addAll(probes);
    return tf.equal(total, tf.scalar(0));
  });
}

/** Throws a `RangeError` when `t` holds NaN or ±Inf (see {@link allFinite}). */
export function checkFinite(where: string, name: string, t: tf.Tensor): void {
  if (!allFinite(t)) {
    throw new RangeError(`${where}: ${name} contains NaN or Inf`);
  }
}

/**
 * Checks a spatial size given as one number or a pair `[height, width]` of integers ≥ 1 (kernel
 * sizes, strides, dilation rates, as Keras accepts them); returns the pair.
 */
export function checkSpatialPair(where: string, name: string, value: unknown): [number, number] {
  const pair = typeof value === 'number' ? [value, value] : value;
  if (!Array.isArray(pair) || pair.length !== 2) {
    throw new RangeError(`${where}: ${name} must be a number or a pair [height, width], got ${JSON.stringify(value)}`);
  }
  return [
    checkNumber(where, `${name}[0]`, pair[0], { min: 1, integer: true }),
    checkNumber(where, `${name}[1]`, pair[1], { min: 1, integer: true }),
  ];
}

/**
 * Checks that a preconditioner's state and the statistics of a step cover the same layers as the
 * preconditioner: every layer it preconditions has state (a layer registered after `init`, e.g. by
 * `createCapture` on the first forward pass, has none), and every layer with statistics is one it
 * preconditions (otherwise that layer's gradients would silently go to the backend alone).
 * Throws a `RangeError` naming `where` and the layer.
 */
export function checkLayerCoverage(
  where: string,
  layerNames: readonly string[],
  state: Readonly<Record<string, unknown>>,
  statistics: Readonly<Record<string, unknown>>,
): void {
  const missing = layerNames.find((name) => state[name] === undefined);
  if (missing !== undefined) {
    throw new RangeError(
      `${where}: layer '${missing}' has no state: it was not known when the state was initialised ` +
        '(createCapture registers layers during the first forward pass: run one before init)',
    );
  }
  const known = new Set(layerNames);
  const stray = Object.keys(statistics).find((name) => statistics[name] !== undefined && !known.has(name));
  if (stray !== undefined) {
    throw new RangeError(
      `${where}: statistics came for layer '${stray}', which is not among the layers it preconditions ` +
        `(${layerNames.length === 0 ? 'none' : layerNames.join(', ')}); give the layers as a function (() => capture.secondOrder) and init after the first forward pass`,
    );
  }
}
