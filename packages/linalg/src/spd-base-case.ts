/**
 * The small dense base case of the block inverse, in float64 plain TypeScript: Cholesky
 * factorisation `A = L Lᵀ`, the inverse of the triangular factor, and `A⁻¹ = L⁻ᵀ L⁻¹`.
 * Each step is O(b³) for a b × b block; the block recursion keeps b small.
 */

/** Where the Cholesky factorisation of a block met a pivot too small for the matrix to be positive definite. */
export interface PivotFailure {
  /** Row of the block where the pivot failed. */
  readonly row: number;
  /** The pivot `a_jj − Σ_k l_jk²` (≤ threshold, or NaN). */
  readonly pivot: number;
}

/**
 * Inverts the symmetric positive-definite `size × size` block held row-major in `block`
 * (only its lower triangle is read), in float64. Returns the inverse as a row-major
 * `Float32Array` that is exactly symmetric, or the failing pivot when a pivot of the Cholesky
 * factorisation is not above `pivotThreshold`.
 */
export function invertSpdBlock64(
  block: ArrayLike<number>,
  size: number,
  pivotThreshold: number,
): { readonly inverse: Float32Array } | { readonly failure: PivotFailure } {
  // Cholesky, row-oriented: lower[i*size + j] = l_ij for j ≤ i.
  const lower = new Float64Array(size * size);
  for (let i = 0; i < size; i++) {
    const rowI = i * size;
    for (let j = 0; j <= i; j++) {
      const rowJ = j * size;
      let sum = block[rowI + j] as number;
      for (let k = 0; k < j; k++) sum -= (lower[rowI + k] as number) * (lower[rowJ + k] as number);
      if (i === j) {
        if (!(sum > pivotThreshold)) return { failure: { row: i, pivot: sum } };
        lower[rowI + i] = Math.sqrt(sum);
      } else {
        lower[rowI + j] = sum / (lower[rowJ + j] as number);
      }
    }
  }
  // M = L⁻¹ (lower triangular), by forward substitution column by column: L M = I.
  const lowerInverse = new Float64Array(size * size);
  for (let i = 0; i < size; i++) {
    const rowI = i * size;
    const diagonal = lower[rowI + i] as number;
    lowerInverse[rowI + i] = 1 / diagonal;
    for (let j = 0; j < i; j++) {
      let sum = 0;
      for (let k = j; k < i; k++) sum += (lower[rowI + k] as number) * (lowerInverse[k * size + j] as number);
      lowerInverse[rowI + j] = -sum / diagonal;
    }
  }
  // A⁻¹ = Mᵀ M: entry (i, j) = Σ_{k ≥ max(i, j)} m_ki m_kj; computed for j ≤ i and mirrored.
  const inverse = new Float32Array(size * size);
  for (let i = 0; i < size; i++) {
    for (let j = 0; j <= i; j++) {
      let sum = 0;
      for (let k = i; k < size; k++) {
        const rowK = k * size;
        sum += (lowerInverse[rowK + i] as number) * (lowerInverse[rowK + j] as number);
      }
      inverse[i * size + j] = sum;
      inverse[j * size + i] = sum;
    }
  }
  return { inverse };
}
