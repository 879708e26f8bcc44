/**
 * Eigenvalues of MKOR's inverse factors in float64, for the page's spectrum picture: a symmetric
 * matrix by cyclic Jacobi rotations, and a factor in low-rank form `P = c·I + U·diag(m)·Uᵀ`
 * through the small matrix `R·diag(m)·Rᵀ` of a thin QR factorisation `U = Q·R` (so a 785-wide
 * factor with a window of 32 costs O(d·r²), not O(d³)). Plain TypeScript, no tensors.
 */

/** An inverse factor's entries as read from the optimizer's state (float32 values). */
export type FactorValues =
  | { readonly kind: 'dense'; readonly size: number; readonly values: ArrayLike<number> }
  | {
      readonly kind: 'low-rank';
      readonly size: number;
      readonly rank: number;
      /** `c`. */
      readonly scale: number;
      /** `U`, `[size, rank]` row-major. */
      readonly basis: ArrayLike<number>;
      /** `m`, `[rank]`. */
      readonly weights: ArrayLike<number>;
    };

/** Rotations stop when the off-diagonal mass is below this fraction of the whole (float64 round-off). */
const RELATIVE_TOLERANCE = 1e-28;
const MAX_SWEEPS = 60;

/**
 * The eigenvalues of the symmetric `size × size` matrix `values` (row-major; its symmetric part is
 * used), in descending order, by cyclic Jacobi rotations in float64. Throws, naming the
 * parameter, when `values` does not hold `size²` finite numbers.
 */
export function symmetricEigenvalues(values: ArrayLike<number>, size: number): Float64Array {
  if (!(Number.isInteger(size) && size >= 0)) throw new RangeError(`symmetricEigenvalues: size must be a non-negative integer, got ${size}`);
  if (values.length !== size * size) throw new RangeError(`symmetricEigenvalues: values holds ${values.length} numbers, not size² = ${size * size}`);
  const a = new Float64Array(size * size);
  for (let i = 0; i < size; i++) {
    for (let j = 0; j < size; j++) a[i * size + j] = ((values[i * size + j] as number) + (values[j * size + i] as number)) / 2;
  }
  if (!a.every(Number.isFinite)) throw new RangeError('symmetricEigenvalues: values holds NaN or ±Inf');
  const total = a.reduce((sum, entry) => sum + entry * entry, 0);
  for (let sweep = 0; sweep < MAX_SWEEPS; sweep++) {
    let offDiagonal = 0;
    for (let p = 0; p < size; p++) for (let q = p + 1; q < size; q++) offDiagonal += 2 * (a[p * size + q] as number) ** 2;
    if (offDiagonal <= RELATIVE_TOLERANCE * total) break;
    for (let p = 0; p < size; p++) {
      for (let q = p + 1; q < size; q++) {
        const apq = a[p * size + q] as number;
        if (apq === 0) continue;
        // The rotation that zeroes a_pq: t = tan φ, the smaller root of t² + 2θt − 1 = 0.
        const theta = ((a[q * size + q] as number) - (a[p * size + p] as number)) / (2 * apq);
        const t = Math.abs(theta) > 1e150 ? 1 / (2 * theta) : (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < size; k++) {
          const akp = a[k * size + p] as number;
          const akq = a[k * size + q] as number;
          a[k * size + p] = c * akp - s * akq;
          a[k * size + q] = s * akp + c * akq;
        }
        for (let k = 0; k < size; k++) {
          const apk = a[p * size + k] as number;
          const aqk = a[q * size + k] as number;
          a[p * size + k] = c * apk - s * aqk;
          a[q * size + k] = s * apk + c * aqk;
        }
      }
    }
  }
  return Float64Array.from({ length: size }, (_, i) => a[i * size + i] as number).sort().reverse();
}

/**
 * `R` (`rank × rank`, row-major) of a thin QR factorisation `U = Q·R` by Gram–Schmidt, twice for
 * stability; a column dependent on the earlier ones gets a zero row of `R` (and no column of Q).
 */
function thinQrFactor(basis: ArrayLike<number>, size: number, rank: number): Float64Array {
  const q: Float64Array[] = [];
  const r = new Float64Array(rank * rank);
  for (let j = 0; j < rank; j++) {
    const v = Float64Array.from({ length: size }, (_, i) => basis[i * rank + j] as number);
    const original = Math.hypot(...v);
    for (let pass = 0; pass < 2; pass++) {
      for (const [k, column] of q.entries()) {
        if (column.length === 0) continue;
        let projection = 0;
        for (let i = 0; i < size; i++) projection += (column[i] as number) * (v[i] as number);
        r[k * rank + j] = (r[k * rank + j] as number) + projection;
        for (let i = 0; i < size; i++) v[i] = (v[i] as number) - projection * (column[i] as number);
      }
    }
    const norm = Math.hypot(...v);
    if (norm <= 1e-12 * original || norm === 0) {
      q.push(new Float64Array(0));
      continue;
    }
    r[j * rank + j] = norm;
    q.push(v.map((entry) => entry / norm));
  }
  return r;
}

/**
 * The eigenvalues of an inverse factor, descending: of the dense matrix, or of `c·I + U·diag(m)·Uᵀ`
 * as `c + μᵢ` for the eigenvalues `μᵢ` of `R·diag(m)·Rᵀ` (`U = Q·R`), and `c` for the other
 * `size − rank` directions. Throws, naming the field, when the sizes do not match.
 */
export function inverseFactorSpectrum(factor: FactorValues): Float64Array {
  if (factor.kind === 'dense') return symmetricEigenvalues(factor.values, factor.size);
  const { size, rank, scale, basis, weights } = factor;
  if (basis.length !== size * rank) throw new RangeError(`inverseFactorSpectrum: basis holds ${basis.length} numbers, not size × rank = ${size * rank}`);
  if (weights.length !== rank) throw new RangeError(`inverseFactorSpectrum: weights holds ${weights.length} numbers, not rank = ${rank}`);
  if (rank > size) throw new RangeError(`inverseFactorSpectrum: rank ${rank} is more than size ${size}`);
  const r = thinQrFactor(basis, size, rank);
  const small = new Float64Array(rank * rank);
  for (let i = 0; i < rank; i++) {
    for (let j = 0; j < rank; j++) {
      let sum = 0;
      for (let k = 0; k < rank; k++) sum += (r[i * rank + k] as number) * (weights[k] as number) * (r[j * rank + k] as number);
      small[i * rank + j] = sum;
    }
  }
  const spectrum = new Float64Array(size).fill(scale);
  symmetricEigenvalues(small, rank).forEach((mu, i) => (spectrum[i] = scale + mu));
  return spectrum.sort().reverse();
}
