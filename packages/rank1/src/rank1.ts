import { checkNumber, checkOneOf } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';

/** Options of {@link rank1Vector} and {@link rankRVectors}. */
export interface Rank1Options {
  /**
   * Append a constant 1 after the statistic (default false): the folded bias, so the vector
   * matches the kernel with its bias row appended, `[W; b]`, of `d + 1` rows.
   */
  appendOne?: boolean;
  /**
   * `'mean'` (default) returns the row mean; `'sum'` returns `n · mean` over the `n` rows (the row
   * sum). The authors' code uses `'sum'` for output gradients: it undoes the `1/n` that a
   * mean-reduced loss puts into every `∂Loss/∂y_i`.
   */
  scale?: 'mean' | 'sum';
  /**
   * Clamp every entry of the (scaled) statistic to `[-clamp, clamp]` before the 1 is appended.
   * A positive finite number; left out, nothing is clamped. The authors' code clamps to ±100.
   * ±Inf becomes ±clamp; NaN stays NaN on every backend.
   */
  clamp?: number;
}

/** Options resolved and checked. */
export interface ResolvedRank1Options {
  readonly appendOne: boolean;
  readonly scale: 'mean' | 'sum';
  readonly clamp: number | undefined;
}

/** Checks the shared options, naming `where` in every error. */
export function resolveRank1Options(where: string, options: Rank1Options = {}): ResolvedRank1Options {
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`${where}: options must be an object, got ${String(options)}`);
  }
  const appendOne = options.appendOne ?? false;
  if (typeof appendOne !== 'boolean') {
    throw new TypeError(`${where}: appendOne must be a boolean, got ${String(appendOne)}`);
  }
  const scale = checkOneOf(where, 'scale', options.scale ?? 'mean', ['mean', 'sum'] as const);
  const clamp =
    options.clamp === undefined ? undefined : checkNumber(where, 'clamp', options.clamp, { min: 0, minExclusive: true });
  return { appendOne, scale, clamp };
}

/**
 * Checks that `x` is a live numeric tensor with at least one entry, of rank ≥ 1 — or, when
 * `layout` names the axes, of exactly that rank. Returns it as float32 (a new tensor when a cast
 * was needed, `x` itself otherwise).
 */
export function checkRows(where: string, name: string, x: unknown, layout?: readonly string[]): tf.Tensor {
  if (!(x instanceof tf.Tensor)) {
    throw new TypeError(`${where}: ${name} must be a tf.Tensor, got ${x === null ? 'null' : typeof x}`);
  }
  if (x.isDisposed) throw new TypeError(`${where}: ${name} has been disposed`);
  if (layout === undefined ? x.rank < 1 : x.rank !== layout.length) {
    const expected = layout === undefined ? '≥ 1' : `${layout.length} [${layout.join(', ')}]`;
    throw new RangeError(`${where}: ${name} must have rank ${expected}, got shape [${x.shape.join(', ')}]`);
  }
  if (x.size === 0) {
    throw new RangeError(`${where}: ${name} must not be empty, got shape [${x.shape.join(', ')}]`);
  }
  if (x.dtype === 'string' || x.dtype === 'complex64') {
    throw new TypeError(`${where}: ${name} must be numeric, got dtype ${x.dtype}`);
  }
  return x.dtype === 'float32' ? x : tf.cast(x, 'float32');
}

/**
 * Scales, clamps and extends a row statistic as {@link Rank1Options} say: `× n` for `'sum'`,
 * clamp to `±clamp`, then a 1 appended. Call inside `tf.tidy`.
 */
export function finishStatistic(mean: tf.Tensor1D, rows: number, options: ResolvedRank1Options): tf.Tensor1D {
  let v: tf.Tensor1D = options.scale === 'sum' ? tf.mul(mean, tf.scalar(rows)) : mean;
  if (options.clamp !== undefined) {
    // The wasm backend's clip maps NaN to −clamp; keep NaN visible on every backend instead.
    v = tf.where(tf.isNaN(v), v, tf.clipByValue(v, -options.clamp, options.clamp));
  }
  return options.appendOne ? tf.concat([v, tf.ones([1])]) : v;
}

/**
 * The rank-1 vector of a layer's rows — its inputs `a` or its output gradients `g` (MKOR
 * Algorithm 1, step 1):
 *
 *     a = (1/n) Σᵢ xᵢ        so that   (1/n) Σᵢ xᵢxᵢᵀ ≈ a aᵀ
 *
 * where the rows `xᵢ` are `x` with every axis but the last flattened: `[batch, d]` has
 * `n = batch` rows, `[batch, seq, d]` has `n = batch·seq` (transformers), and a rank-1 `[d]`
 * is one row. Then, in this order: times `n` when `scale: 'sum'`, clamped to `±clamp` when
 * given, and a constant 1 appended when `appendOne` (the folded bias).
 *
 * Non-finite entries are not checked (that would cost a read-back): a NaN in `x` gives NaN in
 * the result, and `clamp` maps ±Inf means to ±clamp but keeps NaN.
 *
 * @param x a float32 tensor of rank ≥ 1, at least one entry (other numeric dtypes are cast).
 * @returns a new `[d]` (or `[d + 1]`) float32 tensor; `x` is not disposed.
 */
export function rank1Vector(x: tf.Tensor, options?: Rank1Options): tf.Tensor1D {
  const where = 'rank1Vector';
  const resolved = resolveRank1Options(where, options);
  return tf.tidy(() => {
    const rows = checkRows(where, 'x', x);
    const d = rows.shape[rows.rank - 1] as number;
    const n = rows.size / d;
    const mean = tf.mean(tf.reshape(rows, [n, d]), 0) as tf.Tensor1D;
    return finishStatistic(mean, n, resolved);
  });
}

/**
 * Sizes of `r` contiguous blocks of `n` rows, as equal as possible: the first `n mod r` blocks
 * hold one row more.
 */
export function blockSizes(n: number, r: number): number[] {
  const base = Math.floor(n / r);
  const larger = n % r;
  return Array.from({ length: r }, (_, k) => base + (k < larger ? 1 : 0));
}

/**
 * `r` vectors whose outer products approximate the rows' second moment better than one — the
 * inputs of the paper's higher-rank extension, which folds them into an inverse factor by `r`
 * successive rank-1 Sherman–Morrison steps (`updateInverseFactorRankR` in
 * `@mkor/sherman-morrison`).
 *
 * The `n` rows (every axis but the last flattened, in row-major order) are cut into `r`
 * contiguous blocks `B_k` of sizes as equal as possible; with the block mean `m_k` and the
 * weight `w_k = |B_k| / n`, row k of the result is
 *
 *     v_k = √w_k · m̃_k,    Σ_k v_k v_kᵀ = Σ_k w_k m̃_k m̃_kᵀ
 *
 * where `m̃_k` is `m_k` after {@link Rank1Options} (`× n` for `'sum'`, clamp, a 1 appended).
 * Without scale or clamp, `Σ_k v_k v_kᵀ` is the between-block part of `C = (1/n) XᵀX`: it is
 * `a aᵀ` for `r = 1` (row 0 is then exactly {@link rank1Vector}), `C` itself for `r = n`, and
 * `C − Σ_k v_k v_kᵀ` (the within-block scatter) is positive semi-definite for every `r`, so
 * like the rank-1 statistic it never over-states the factor. The weights sum to 1, so the rows
 * go straight into `updateInverseFactorRankR(inverse, vectors)`, which inverts
 * `γF + (1 − γ) Σ_k v_k v_kᵀ`.
 *
 * @param r the number of vectors, an integer in `[1, n]`.
 * @returns a new `[r, d]` (or `[r, d + 1]`) float32 tensor; `x` is not disposed.
 */
export function rankRVectors(x: tf.Tensor, r: number, options?: Rank1Options): tf.Tensor2D {
  const where = 'rankRVectors';
  const resolved = resolveRank1Options(where, options);
  return tf.tidy(() => {
    const rows = checkRows(where, 'x', x);
    const d = rows.shape[rows.rank - 1] as number;
    const n = rows.size / d;
    checkNumber(where, 'r', r, { min: 1, max: n, integer: true });
    const sizes = blockSizes(n, r);
    const blocks = tf.split(tf.reshape(rows, [n, d]), sizes, 0);
    const vectors = blocks.map((block, k) => {
      const weight = (sizes[k] as number) / n;
      const mean = tf.mean(block, 0) as tf.Tensor1D;
      return tf.mul(finishStatistic(mean, n, resolved), tf.scalar(Math.sqrt(weight)));
    });
    return tf.stack(vectors) as tf.Tensor2D;
  });
}
