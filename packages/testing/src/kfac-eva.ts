/**
 * Float64 references for `@mkor/kfac` and `@mkor/eva`: the bias fold of a covariance, damped
 * inverses, the two preconditioners, the KL-clip, and Eva's preconditioner written the long way
 * (an explicit solve with the `(d_in·d_out)²` matrix `aaᵀ ⊗ ggᵀ + λI`).
 */
import { type Matrix64, combine, identity, inverse, matmul, matrix } from './float64';

/** `[[C, a], [aᵀ, 1]]`: the second moment of the rows `[x, 1]` from `C = E[xxᵀ]` and `a = E[x]`. */
export function foldBias64(covariance: Matrix64, mean: ArrayLike<number>): Matrix64 {
  const d = covariance.rows;
  const out = matrix(d + 1, d + 1);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) out.data[i * (d + 1) + j] = covariance.data[i * d + j] as number;
    out.data[i * (d + 1) + d] = mean[i] as number;
    out.data[d * (d + 1) + i] = mean[i] as number;
  }
  out.data[(d + 1) * (d + 1) - 1] = 1;
  return out;
}

/** `(F + λI)⁻¹` by Gauss–Jordan in float64. */
export function dampedInverse64(factor: Matrix64, damping: number): Matrix64 {
  return inverse(combine(1, factor, damping, identity(factor.rows)));
}

/** KFAC's step in the kernel layout: `A⁻¹ M G⁻¹` (`M = [∇K; ∇b]`, `[d_in(+1), d_out]`). */
export function kfacPrecondition64(gradient: Matrix64, inputInverse: Matrix64, outputInverse: Matrix64): Matrix64 {
  return matmul(matmul(inputInverse, gradient), outputInverse);
}

/** `ν = min(1, sqrt(κ / |Σ ΔW·∇W·lr²|))` over all pairs. */
export function klClipFactor64(pairs: readonly { update: Matrix64; gradient: Matrix64 }[], learningRate: number, kappa: number): number {
  let inner = 0;
  for (const { update, gradient } of pairs) update.data.forEach((u, i) => (inner += u * (gradient.data[i] as number)));
  return Math.min(1, Math.sqrt(kappa / Math.abs(inner * learningRate * learningRate)));
}

/** Eva's closed form in the kernel layout: `(1/λ)(M − (aᵀMg)/(‖a‖²‖g‖² + λ) · a gᵀ)`. */
export function evaPrecondition64(gradient: Matrix64, a: ArrayLike<number>, g: ArrayLike<number>, damping: number): Matrix64 {
  const rows = gradient.rows;
  const cols = gradient.cols;
  let projection = 0;
  let aNorm = 0;
  let gNorm = 0;
  for (let i = 0; i < rows; i++) aNorm += (a[i] as number) ** 2;
  for (let j = 0; j < cols; j++) gNorm += (g[j] as number) ** 2;
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) projection += (a[i] as number) * (gradient.data[i * cols + j] as number) * (g[j] as number);
  const coefficient = projection / (aNorm * gNorm + damping);
  const out = matrix(rows, cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      out.data[i * cols + j] = ((gradient.data[i * cols + j] as number) - coefficient * (a[i] as number) * (g[j] as number)) / damping;
    }
  }
  return out;
}

/**
 * `(aaᵀ ⊗ ggᵀ + λI)⁻¹ vec(M)` solved explicitly: the Kronecker product written out as the
 * `(d_in·d_out)²` matrix `vvᵀ` with `v[i·d_out + j] = a_i g_j` (M's row-major order), plus λI,
 * inverted by Gauss–Jordan. Independent of the Sherman–Morrison derivation; small sizes only.
 */
export function kroneckerSolve64(gradient: Matrix64, a: ArrayLike<number>, g: ArrayLike<number>, damping: number): Matrix64 {
  const rows = gradient.rows;
  const cols = gradient.cols;
  const size = rows * cols;
  const v = new Float64Array(size);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) v[i * cols + j] = (a[i] as number) * (g[j] as number);
  const system = matrix(size, size);
  for (let p = 0; p < size; p++) for (let q = 0; q < size; q++) system.data[p * size + q] = (v[p] as number) * (v[q] as number) + (p === q ? damping : 0);
  const solved = matmul(inverse(system), matrix(size, 1, gradient.data));
  return matrix(rows, cols, solved.data);
}
