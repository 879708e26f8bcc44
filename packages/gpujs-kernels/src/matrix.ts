/**
 * The plain data the kernels take and return — row-major `Float32Array`s with their sizes, no
 * tensors — and the checks every public function runs on it.
 */

/** A dense row-major float32 matrix: entry (i, j) is `data[i·columns + j]`. */
export interface Float32Matrix {
  /** Number of rows, a positive integer. */
  readonly rows: number;
  /** Number of columns, a positive integer. */
  readonly columns: number;
  /** The `rows·columns` entries, row after row. */
  readonly data: Float32Array;
}

/**
 * An inverse factor held in low-rank form, `P = c·I + U·diag(m)·Uᵀ` (the form of
 * `LowRankInverse` in `@mkor/sherman-morrison`, here as plain numbers): `U` is `[d, r]`, one
 * term a column, `m` the terms' weights (0 for an unused slot).
 */
export interface LowRankFactor {
  /** `c`, the multiple of the identity. */
  readonly scale: number;
  /** `U`, `[d, r]`: the terms' vectors as columns. */
  readonly basis: Float32Matrix;
  /** `m`, `[r]`: the terms' weights. */
  readonly weights: Float32Array;
}

/** An inverse factor in either form: a dense square {@link Float32Matrix} or a {@link LowRankFactor}. */
export type InverseFactor = Float32Matrix | LowRankFactor;

/** Whether an inverse factor is held in low-rank form. */
export function isLowRankFactor(factor: InverseFactor): factor is LowRankFactor {
  return 'basis' in factor;
}

/** The size d of a `[d, d]` factor in either form. */
export function factorSize(factor: InverseFactor): number {
  return isLowRankFactor(factor) ? factor.basis.rows : factor.rows;
}

/** Throws a RangeError naming `where` and `name` unless `value` is an integer ≥ 1. */
export function checkSize(where: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new RangeError(`${where}: ${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

/** Throws unless `value` is a finite number in [min, max] (or the open interval where said). */
export function checkRatio(where: string, name: string, value: unknown, bounds: { min: number; max: number; open?: boolean }): number {
  const inside = typeof value === 'number' && (bounds.open === true ? value > bounds.min && value < bounds.max : value >= bounds.min && value <= bounds.max);
  if (!inside) {
    const interval = bounds.open === true ? `(${bounds.min}, ${bounds.max})` : `[${bounds.min}, ${bounds.max}]`;
    throw new RangeError(`${where}: ${name} must be a number in ${interval}, got ${String(value)}`);
  }
  return value;
}

/** Throws a TypeError unless `value` is a Float32Array of `length` entries (RangeError for a wrong length). */
export function checkFloat32Array(where: string, name: string, value: unknown, length: number): Float32Array {
  if (!(value instanceof Float32Array)) {
    throw new TypeError(`${where}: ${name} must be a Float32Array, got ${value === null ? 'null' : typeof value === 'object' ? value.constructor.name : typeof value}`);
  }
  if (value.length !== length) throw new RangeError(`${where}: ${name} must hold ${length} entries, got ${value.length}`);
  return value;
}

/** Checks a {@link Float32Matrix}: positive integer sizes and `rows·columns` float32 entries. */
export function checkMatrix(where: string, name: string, value: unknown): Float32Matrix {
  if (typeof value !== 'object' || value === null) throw new TypeError(`${where}: ${name} must be a Float32Matrix { rows, columns, data }, got ${String(value)}`);
  const matrix = value as Partial<Float32Matrix>;
  const rows = checkSize(where, `${name}.rows`, matrix.rows);
  const columns = checkSize(where, `${name}.columns`, matrix.columns);
  checkFloat32Array(where, `${name}.data`, matrix.data, rows * columns);
  return value as Float32Matrix;
}

/** Checks an {@link InverseFactor} of size `d`, dense (`[d, d]`) or low-rank (`basis` `[d, r]`, `weights` `[r]`). */
export function checkInverseFactor(where: string, name: string, value: unknown, d: number): InverseFactor {
  if (typeof value === 'object' && value !== null && 'basis' in value) {
    const factor = value as LowRankFactor;
    const basis = checkMatrix(where, `${name}.basis`, factor.basis);
    if (basis.rows !== d) throw new RangeError(`${where}: ${name}.basis must have ${d} rows, got ${basis.rows}`);
    checkFloat32Array(where, `${name}.weights`, factor.weights, basis.columns);
    if (typeof factor.scale !== 'number') throw new TypeError(`${where}: ${name}.scale must be a number, got ${typeof factor.scale}`);
    return factor;
  }
  const matrix = checkMatrix(where, name, value);
  if (matrix.rows !== d || matrix.columns !== d) throw new RangeError(`${where}: ${name} must be ${d} × ${d}, got ${matrix.rows} × ${matrix.columns}`);
  return matrix;
}

/** The index of the first NaN or ±Infinity in `values`, or −1. */
export function firstNonFinite(values: ArrayLike<number>): number {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) return i;
  }
  return -1;
}

/** Throws a RangeError naming `where`, `name` and the entry when `values` holds NaN or ±Infinity. */
export function checkFinite(where: string, name: string, values: ArrayLike<number>): void {
  const at = firstNonFinite(values);
  if (at >= 0) throw new RangeError(`${where}: ${name} holds ${String(values[at])} at entry ${at}; only finite values are accepted`);
}

/** Every number array of a factor, for {@link checkFinite}. */
export function factorParts(name: string, factor: InverseFactor): [string, ArrayLike<number>][] {
  return isLowRankFactor(factor)
    ? [
        [`${name}.scale`, [factor.scale]],
        [`${name}.basis`, factor.basis.data],
        [`${name}.weights`, factor.weights],
      ]
    : [[name, factor.data]];
}
