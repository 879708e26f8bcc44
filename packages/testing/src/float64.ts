/**
 * Float64 reference linear algebra in plain TypeScript. Tests compare the float32 tensor code
 * against these, never against itself. Matrices are row-major `Float64Array`s with their size.
 */
import * as tf from '@tensorflow/tfjs-core';

/** A dense row-major float64 matrix. */
export interface Matrix64 {
  readonly rows: number;
  readonly cols: number;
  readonly data: Float64Array;
}

export function matrix(rows: number, cols: number, data?: ArrayLike<number>): Matrix64 {
  const m = { rows, cols, data: new Float64Array(rows * cols) };
  if (data) {
    if (data.length !== rows * cols) throw new RangeError('matrix: data has the wrong length');
    m.data.set(data);
  }
  return m;
}

export function identity(d: number): Matrix64 {
  const m = matrix(d, d);
  for (let i = 0; i < d; i++) m.data[i * d + i] = 1;
  return m;
}

export function get(m: Matrix64, i: number, j: number): number {
  return m.data[i * m.cols + j] as number;
}

/** Reads a rank-2 tensor (or a rank-1 one, as a column) into float64. */
export function fromTensor(t: tf.Tensor): Matrix64 {
  const rows = t.shape[0] ?? 1;
  const cols = t.rank === 1 ? 1 : (t.shape[1] ?? 1);
  return matrix(rows, cols, t.dataSync());
}

/** The parts of an inverse factor in low-rank form `c·I + U·diag(m)·Uᵀ` (`@mkor/sherman-morrison`'s `LowRankInverse`). */
export interface LowRankParts {
  readonly scale: tf.Tensor;
  readonly basis: tf.Tensor;
  readonly weights: tf.Tensor;
}

/**
 * An inverse factor, dense (a `[d, d]` tensor) or in low-rank form, as a float64 matrix; the
 * low-rank one is assembled in float64 from its float32 parts: `c·I + Σ_k m_k·u_k·u_kᵀ`.
 */
export function inverseFactor64(factor: tf.Tensor | LowRankParts): Matrix64 {
  if (factor instanceof tf.Tensor) return fromTensor(factor);
  const c = factor.scale.dataSync()[0] as number;
  const basis = fromTensor(factor.basis);
  const weights = factor.weights.dataSync();
  const d = basis.rows;
  const result = identity(d);
  for (let i = 0; i < d * d; i++) result.data[i] = (result.data[i] as number) * c;
  for (let k = 0; k < basis.cols; k++) {
    const m = weights[k] as number;
    if (m === 0) continue;
    for (let i = 0; i < d; i++) {
      const ui = m * get(basis, i, k);
      for (let j = 0; j < d; j++) result.data[i * d + j] = (result.data[i * d + j] as number) + ui * get(basis, j, k);
    }
  }
  return result;
}

/** A float32 tensor of shape `[rows, cols]` holding `m` rounded to float32. */
export function toTensor(m: Matrix64): tf.Tensor2D {
  return tf.tensor2d(Float32Array.from(m.data), [m.rows, m.cols]);
}

export function transpose(a: Matrix64): Matrix64 {
  const t = matrix(a.cols, a.rows);
  for (let i = 0; i < a.rows; i++) for (let j = 0; j < a.cols; j++) t.data[j * a.rows + i] = get(a, i, j);
  return t;
}

export function matmul(a: Matrix64, b: Matrix64): Matrix64 {
  if (a.cols !== b.rows) throw new RangeError(`matmul: ${a.rows}x${a.cols} by ${b.rows}x${b.cols}`);
  const c = matrix(a.rows, b.cols);
  for (let i = 0; i < a.rows; i++) {
    for (let k = 0; k < a.cols; k++) {
      const aik = get(a, i, k);
      if (aik === 0) continue;
      for (let j = 0; j < b.cols; j++) {
        const at = i * b.cols + j;
        c.data[at] = (c.data[at] as number) + aik * get(b, k, j);
      }
    }
  }
  return c;
}

/** `αa + βb`. */
export function combine(alpha: number, a: Matrix64, beta: number, b: Matrix64): Matrix64 {
  if (a.rows !== b.rows || a.cols !== b.cols) throw new RangeError('combine: shapes differ');
  const c = matrix(a.rows, a.cols);
  for (let i = 0; i < c.data.length; i++) c.data[i] = alpha * (a.data[i] as number) + beta * (b.data[i] as number);
  return c;
}

export function scale(a: Matrix64, s: number): Matrix64 {
  return combine(s, a, 0, a);
}

/** `u vᵀ` for column vectors given as arrays. */
export function outer(u: ArrayLike<number>, v: ArrayLike<number>): Matrix64 {
  const m = matrix(u.length, v.length);
  for (let i = 0; i < u.length; i++) for (let j = 0; j < v.length; j++) m.data[i * v.length + j] = (u[i] as number) * (v[j] as number);
  return m;
}

export function matVec(a: Matrix64, v: ArrayLike<number>): Float64Array {
  if (a.cols !== v.length) throw new RangeError('matVec: length mismatch');
  const out = new Float64Array(a.rows);
  for (let i = 0; i < a.rows; i++) {
    let s = 0;
    for (let j = 0; j < a.cols; j++) s += get(a, i, j) * (v[j] as number);
    out[i] = s;
  }
  return out;
}

export function dot(u: ArrayLike<number>, v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < u.length; i++) s += (u[i] as number) * (v[i] as number);
  return s;
}

export function frobeniusNorm(a: Matrix64): number {
  return Math.sqrt(dot(a.data, a.data));
}

/** Largest absolute entry. */
export function maxAbs(a: Matrix64): number {
  let m = 0;
  for (const x of a.data) m = Math.max(m, Math.abs(x));
  return m;
}

/** The induced ∞-norm: largest absolute row sum. */
export function infNorm(a: Matrix64): number {
  let m = 0;
  for (let i = 0; i < a.rows; i++) {
    let s = 0;
    for (let j = 0; j < a.cols; j++) s += Math.abs(get(a, i, j));
    m = Math.max(m, s);
  }
  return m;
}

/** `‖a − b‖_F / ‖b‖_F` (absolute when b is zero). */
export function relativeError(a: Matrix64, b: Matrix64): number {
  const diff = frobeniusNorm(combine(1, a, -1, b));
  const ref = frobeniusNorm(b);
  return ref === 0 ? diff : diff / ref;
}

/** Largest `|a_ij − a_ji|` relative to the largest entry. */
export function asymmetry(a: Matrix64): number {
  let m = 0;
  for (let i = 0; i < a.rows; i++) for (let j = 0; j < i; j++) m = Math.max(m, Math.abs(get(a, i, j) - get(a, j, i)));
  const s = maxAbs(a);
  return s === 0 ? m : m / s;
}

/**
 * The lower Cholesky factor of a symmetric matrix, or `null` when it is not (numerically)
 * positive definite: a pivot ≤ 0 or non-finite. Reads the lower triangle only.
 */
export function cholesky(a: Matrix64): Matrix64 | null {
  const d = a.rows;
  const l = matrix(d, d);
  for (let j = 0; j < d; j++) {
    let s = get(a, j, j);
    for (let k = 0; k < j; k++) s -= get(l, j, k) ** 2;
    if (!(s > 0) || !Number.isFinite(s)) return null;
    const ljj = Math.sqrt(s);
    l.data[j * d + j] = ljj;
    for (let i = j + 1; i < d; i++) {
      let t = get(a, i, j);
      for (let k = 0; k < j; k++) t -= get(l, i, k) * get(l, j, k);
      l.data[i * d + j] = t / ljj;
    }
  }
  return l;
}

/** The inverse of a square matrix by Gauss–Jordan elimination with partial pivoting. */
export function inverse(a: Matrix64): Matrix64 {
  const d = a.rows;
  if (a.cols !== d) throw new RangeError('inverse: not square');
  const w = matrix(d, 2 * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) w.data[i * 2 * d + j] = get(a, i, j);
    w.data[i * 2 * d + d + i] = 1;
  }
  const n = 2 * d;
  for (let c = 0; c < d; c++) {
    let p = c;
    for (let r = c + 1; r < d; r++) if (Math.abs(w.data[r * n + c] as number) > Math.abs(w.data[p * n + c] as number)) p = r;
    const pivot = w.data[p * n + c] as number;
    if (pivot === 0) throw new RangeError('inverse: singular matrix');
    if (p !== c) {
      for (let j = 0; j < n; j++) {
        const t = w.data[c * n + j] as number;
        w.data[c * n + j] = w.data[p * n + j] as number;
        w.data[p * n + j] = t;
      }
    }
    for (let j = 0; j < n; j++) w.data[c * n + j] = (w.data[c * n + j] as number) / pivot;
    for (let r = 0; r < d; r++) {
      if (r === c) continue;
      const f = w.data[r * n + c] as number;
      if (f === 0) continue;
      for (let j = 0; j < n; j++) w.data[r * n + j] = (w.data[r * n + j] as number) - f * (w.data[c * n + j] as number);
    }
  }
  const inv = matrix(d, d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) inv.data[i * d + j] = w.data[i * n + d + j] as number;
  return inv;
}

/**
 * An orthogonal matrix from the Gram–Schmidt (twice, for stability) of the columns of `seed`,
 * a square matrix of random entries; degenerate columns are replaced by unit vectors.
 */
export function orthogonalFrom(seed: Matrix64): Matrix64 {
  const d = seed.rows;
  const q = matrix(d, d);
  // Removes the components along the first j columns of q (twice, for stability); returns the norm left.
  const orthogonalize = (v: Float64Array, j: number): number => {
    for (let pass = 0; pass < 2; pass++) {
      for (let k = 0; k < j; k++) {
        let p = 0;
        for (let i = 0; i < d; i++) p += get(q, i, k) * (v[i] as number);
        for (let i = 0; i < d; i++) v[i] = (v[i] as number) - p * get(q, i, k);
      }
    }
    return Math.sqrt(dot(v, v));
  };
  for (let j = 0; j < d; j++) {
    let v = new Float64Array(d);
    for (let i = 0; i < d; i++) v[i] = get(seed, i, j);
    let norm = orthogonalize(v, j);
    // A degenerate seed column: use the first unit vector that is independent of the columns so far.
    for (let e = 0; norm < 1e-6 && e < d; e++) {
      v = new Float64Array(d);
      v[e] = 1;
      norm = orthogonalize(v, j);
    }
    for (let i = 0; i < d; i++) q.data[i * d + j] = (v[i] as number) / norm;
  }
  return q;
}

/** `Q diag(λ) Qᵀ`: a symmetric matrix with eigenvectors Q and eigenvalues λ. */
export function fromSpectrum(q: Matrix64, eigenvalues: ArrayLike<number>): Matrix64 {
  const d = q.rows;
  const qd = matrix(d, d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) qd.data[i * d + j] = get(q, i, j) * (eigenvalues[j] as number);
  const a = matmul(qd, transpose(q));
  return symmetrize(a);
}

/** `(a + aᵀ)/2`. */
export function symmetrize(a: Matrix64): Matrix64 {
  return scale(combine(1, a, 1, transpose(a)), 0.5);
}
