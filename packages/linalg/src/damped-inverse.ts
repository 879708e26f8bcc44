import * as tf from '@tensorflow/tfjs-core';
import { checkFinite, checkFloat32, checkNumber, checkOneOf, checkSquareMatrix } from '@mkor/core';

import { invertSpdBlock64 } from './spd-base-case';

/** Float32 unit roundoff, 2⁻²⁴. */
const FLOAT32_UNIT_ROUNDOFF = 2 ** -24;

/**
 * Blocks of at most this size are inverted in float64 plain TypeScript; larger ones are split
 * in two. It trades the O(b³) JS base case (≈ 0.5·10⁹ multiply-adds/s) against the per-call
 * overhead of many small kernels; 32, 64, 128 and 256 were within the noise of each other on
 * wasm at d = 256–1024 (see docs/packages/linalg.md).
 */
const BASE_BLOCK_SIZE = 64;

/**
 * Relative asymmetry `max|A − Aᵀ| / max|A|` above which the input is rejected as not symmetric.
 * Float32 products such as `XᵀX` are symmetric to a few units of roundoff times √d, far below it.
 */
const SYMMETRY_TOLERANCE = 1e-3;

/** The algorithms {@link dampedInverse} offers. */
export type DampedInverseMethod = 'schur' | 'newton-schulz';

const METHODS: readonly DampedInverseMethod[] = ['schur', 'newton-schulz'];

/** Options of {@link dampedInverse}. */
export interface DampedInverseOptions {
  /**
   * `'schur'` (default): exact recursive 2 × 2 block inversion through Schur complements,
   * O(d³) in `tf.matMul`. `'newton-schulz'`: the iteration of {@link newtonSchulzInverse};
   * on the cpu and wasm backends it is slower than `'schur'` even from a close `initialGuess`
   * (one iteration is two matrix products, the whole Schur inverse ≈ 1.3) and less accurate.
   */
  readonly method?: DampedInverseMethod;
  /** `'newton-schulz'` only: see {@link NewtonSchulzOptions.initialGuess}. */
  readonly initialGuess?: tf.Tensor2D;
  /** `'newton-schulz'` only: see {@link NewtonSchulzOptions.maxIterations}. */
  readonly maxIterations?: number;
}

/** Options of {@link newtonSchulzInverse}. */
export interface NewtonSchulzOptions {
  /**
   * Start of the iteration, e.g. the inverse computed a few steps ago (KFAC's stale inverse).
   * It must satisfy `‖I − (A + λI)X₀‖ < 1` for the iteration to converge. Default
   * `I / ‖A + λI‖_∞`, which converges for every positive-definite matrix.
   */
  readonly initialGuess?: tf.Tensor2D;
  /** Iterations allowed before giving up with an error. Default 60. */
  readonly maxIterations?: number;
}

/** The result of {@link newtonSchulzInverse}. */
export interface NewtonSchulzResult {
  /** The symmetrised approximation of `(A + λI)⁻¹`. */
  readonly inverse: tf.Tensor2D;
  /** Iterations (each two `d × d` matrix products) that were run. */
  readonly iterations: number;
  /** `‖I − (A + λI)X‖_F` of the returned iterate, before symmetrisation. */
  readonly residualNorm: number;
}

/**
 * `A + λI` as its symmetric part `(A + Aᵀ)/2 + λI`, after checking that `matrix` is a finite
 * square matrix that is symmetric to {@link SYMMETRY_TOLERANCE}. Returns it with its largest
 * diagonal entry (read back once, with the asymmetry).
 */
function dampedSymmetricPart(
  where: string,
  matrix: tf.Tensor2D,
  damping: number,
): { readonly damped: tf.Tensor2D; readonly largestDiagonal: number } {
  const d = checkSquareMatrix(where, 'matrix', matrix);
  checkFloat32(where, 'matrix', matrix);
  if (d === 0) throw new RangeError(`${where}: matrix must be at least 1 × 1, got shape [0, 0]`);
  checkNumber(where, 'damping', damping, { min: 0 });
  checkFinite(where, 'matrix', matrix);
  const damped = tf.tidy(() => {
    const symmetric = tf.mul<tf.Tensor2D>(tf.add(matrix, tf.transpose(matrix)), tf.scalar(0.5));
    return damping === 0 ? symmetric : tf.add<tf.Tensor2D>(symmetric, tf.mul(tf.eye(d), tf.scalar(damping)));
  });
  const summary = tf.tidy(() =>
    tf.stack([
      tf.max(tf.abs(tf.sub(matrix, tf.transpose(matrix)))),
      tf.max(tf.abs(matrix)),
      tf.max(tf.mul(damped, tf.eye(d))),
    ]),
  );
  const [asymmetry, largestEntry, largestDiagonal] = summary.dataSync() as Float32Array;
  summary.dispose();
  if ((asymmetry as number) > SYMMETRY_TOLERANCE * (largestEntry as number)) {
    damped.dispose();
    throw new RangeError(
      `${where}: matrix must be symmetric, got max|A − Aᵀ| = ${asymmetry} against max|A| = ${largestEntry}`,
    );
  }
  return { damped, largestDiagonal: largestDiagonal as number };
}

function notPositiveDefinite(where: string, damping: number, row: number, pivot: number, threshold: number): RangeError {
  return new RangeError(
    `${where}: matrix + ${damping}·I is not positive definite in float32: Cholesky pivot ${pivot} at row ${row} ` +
      `is not above ${threshold} (2⁻²⁴ × the largest diagonal entry); increase the damping`,
  );
}

/**
 * The inverse of the symmetric positive-definite `a` (rows `offset … offset + n − 1` of the
 * whole matrix, for error messages) by recursive 2 × 2 block inversion:
 *
 *     A = [A₁₁ A₁₂; A₁₂ᵀ A₂₂],  X = A₁₁⁻¹,  W = X A₁₂,  S = A₂₂ − A₁₂ᵀ W,  Y = S⁻¹,
 *     A⁻¹ = [X + W Y Wᵀ, −W Y; −(W Y)ᵀ, Y].
 *
 * The Schur complement S of an SPD matrix is SPD, and the pivots of the float64 Cholesky base
 * cases are exactly the pivots of the Cholesky factorisation of A, so a matrix that is not
 * positive definite is caught there.
 */
function invertSpdRecursive(
  where: string,
  a: tf.Tensor2D,
  offset: number,
  pivotThreshold: number,
  damping: number,
): tf.Tensor2D {
  const n = a.shape[0];
  if (n <= BASE_BLOCK_SIZE) {
    const result = invertSpdBlock64(a.dataSync(), n, pivotThreshold);
    if ('failure' in result) {
      throw notPositiveDefinite(where, damping, offset + result.failure.row, result.failure.pivot, pivotThreshold);
    }
    return tf.tensor2d(result.inverse, [n, n]);
  }
  const n1 = Math.ceil(n / 2);
  const n2 = n - n1;
  return tf.tidy(() => {
    const a11 = tf.slice(a, [0, 0], [n1, n1]);
    const a12 = tf.slice(a, [0, n1], [n1, n2]);
    const a22 = tf.slice(a, [n1, n1], [n2, n2]);
    const x = invertSpdRecursive(where, a11, offset, pivotThreshold, damping);
    // Transposes are explicit: the wasm matMul with a transpose flag is 10–80× slower than a
    // transpose followed by a plain matMul.
    const w = tf.matMul<tf.Tensor2D>(x, a12);
    const schur = tf.sub(a22, tf.matMul(tf.transpose(a12), w));
    // Symmetrise the complement so that both of its triangles describe the same matrix.
    const schurSymmetric = tf.mul<tf.Tensor2D>(tf.add(schur, tf.transpose(schur)), tf.scalar(0.5));
    const y = invertSpdRecursive(where, schurSymmetric, offset + n1, pivotThreshold, damping);
    const wy = tf.matMul<tf.Tensor2D>(w, y);
    const topLeft = tf.add<tf.Tensor2D>(x, tf.matMul(wy, tf.transpose(w)));
    const topRight = tf.neg<tf.Tensor2D>(wy);
    const top = tf.concat<tf.Tensor2D>([topLeft, topRight], 1);
    const bottom = tf.concat<tf.Tensor2D>([tf.transpose<tf.Tensor2D>(topRight), y], 1);
    return tf.concat<tf.Tensor2D>([top, bottom], 0);
  });
}

/**
 * The damped inverse `(A + λI)⁻¹` of a symmetric positive (semi-)definite matrix A, as KFAC
 * needs for its factors (eq. 2: `W ← W − α (L + λI)⁻¹ ∇W (R + λI)⁻¹`).
 *
 * The default method, `'schur'`, is exact up to float32 rounding: recursive 2 × 2 block
 * inversion through Schur complements, whose O(d³) work (≈ 4/3·d³ multiply-adds) is done by
 * `tf.matMul`, with 64 × 64 base blocks inverted by Cholesky in float64. Its relative error
 * (Frobenius) is typically below `√d·κ·u` and at most about `2·d·κ·u` (κ the 2-norm condition
 * number of `A + λI`, u = 2⁻²⁴; measured, see docs/packages/linalg.md). See
 * {@link newtonSchulzInverse} for `'newton-schulz'`.
 *
 * The input is taken as its symmetric part `(A + Aᵀ)/2`; the result is exactly symmetric.
 *
 * @param matrix - symmetric `[d, d]` matrix A; not disposed.
 * @param damping - λ ≥ 0 added to the diagonal (default 0).
 * @param options - `method` (default `'schur'`); `initialGuess` and `maxIterations` for `'newton-schulz'`.
 * @throws RangeError when `matrix` is not square or empty, holds NaN/Inf, is not symmetric
 *   (relative asymmetry above 1e-3), when λ < 0, or when `A + λI` is not positive definite in
 *   float32 (a Cholesky pivot at most 2⁻²⁴ × its largest diagonal entry; the message names the
 *   row); TypeError when `matrix` is not a float32 tensor.
 */
export function dampedInverse(
  matrix: tf.Tensor2D,
  damping = 0,
  options: DampedInverseOptions = {},
): tf.Tensor2D {
  const where = 'dampedInverse';
  const method = checkOneOf(where, 'method', options.method ?? 'schur', METHODS);
  if (method === 'newton-schulz') {
    const { inverse } = solveNewtonSchulz(where, matrix, damping, options);
    return inverse;
  }
  if (options.initialGuess !== undefined || options.maxIterations !== undefined) {
    throw new RangeError(`${where}: initialGuess and maxIterations apply to method 'newton-schulz' only`);
  }
  const { damped, largestDiagonal } = dampedSymmetricPart(where, matrix, damping);
  try {
    const pivotThreshold = FLOAT32_UNIT_ROUNDOFF * largestDiagonal;
    return tf.tidy(() => {
      const inverse = invertSpdRecursive(where, damped, 0, pivotThreshold, damping);
      // Each base block is exactly symmetric, X + (WY)Wᵀ only to rounding: average with the transpose.
      return tf.mul<tf.Tensor2D>(tf.add(inverse, tf.transpose(inverse)), tf.scalar(0.5));
    });
  } finally {
    damped.dispose();
  }
}

/**
 * `(A + λI)⁻¹` by the Newton–Schulz (Hotelling) iteration
 *
 *     R_k = I − (A + λI) X_k,   X_{k+1} = X_k + X_k R_k = X_k (2I − (A + λI) X_k),
 *
 * for which `R_{k+1} = R_k²`: convergence is quadratic once `‖R_k‖ < 1`. From the default
 * start `X₀ = I / ‖A + λI‖_∞` (≤ √d·λmax) the eigenvalues of `R₀` lie in `[0, 1 − 1/(√d·κ))`
 * and the iteration needs about `log₂(√d·κ) + 5` steps of two matrix products each (≈ 4·d³
 * flops a step), far more than the Schur method's ≈ 8/3·d³ flops in all; from a close warm
 * start (`‖R₀‖ ≤ 0.1`) 3–4 steps do. It stops when `‖R_k‖_F` stops decreasing, or no longer
 * halves although below 1/2 (float32 rounding reached), and returns the iterate with the
 * smallest residual, symmetrised.
 *
 * @param matrix - symmetric `[d, d]` matrix A; not disposed.
 * @param damping - λ ≥ 0 added to the diagonal (default 0).
 * @param options - warm start and iteration limit, see {@link NewtonSchulzOptions}.
 * @throws RangeError on the input errors of {@link dampedInverse}, for a bad `initialGuess`
 *   (shape, NaN/Inf) or `maxIterations`, and when the iteration diverges, stops making progress
 *   with `‖R‖_F ≥ 1`, or has not converged in `maxIterations` (A + λI not positive definite,
 *   too ill-conditioned, or a warm start that is too far off); TypeError for non-float32 tensors.
 */
export function newtonSchulzInverse(
  matrix: tf.Tensor2D,
  damping = 0,
  options: NewtonSchulzOptions = {},
): NewtonSchulzResult {
  return solveNewtonSchulz('newtonSchulzInverse', matrix, damping, options);
}

function solveNewtonSchulz(
  where: string,
  matrix: tf.Tensor2D,
  damping: number,
  options: NewtonSchulzOptions,
): NewtonSchulzResult {
  const maxIterations = checkNumber(where, 'maxIterations', options.maxIterations ?? 60, { min: 1, integer: true });
  const { initialGuess } = options;
  if (initialGuess !== undefined) {
    const d = checkSquareMatrix(where, 'matrix', matrix);
    const guessSize = checkSquareMatrix(where, 'initialGuess', initialGuess);
    checkFloat32(where, 'initialGuess', initialGuess);
    if (guessSize !== d) {
      throw new RangeError(`${where}: initialGuess must have shape [${d}, ${d}], got [${guessSize}, ${guessSize}]`);
    }
    checkFinite(where, 'initialGuess', initialGuess);
  }
  const { damped, largestDiagonal } = dampedSymmetricPart(where, matrix, damping);
  const d = damped.shape[0];
  if (!(largestDiagonal > 0)) {
    damped.dispose();
    throw new RangeError(
      `${where}: matrix + ${damping}·I is not positive definite: its largest diagonal entry is ${largestDiagonal}`,
    );
  }
  const identity = tf.eye(d);
  let iterate: tf.Tensor2D =
    initialGuess === undefined
      ? tf.tidy(() => tf.div<tf.Tensor2D>(identity, tf.max(tf.sum(tf.abs(damped), 1))))
      : tf.clone(initialGuess);
  let best: { iterate: tf.Tensor2D; residualNorm: number } | undefined;
  let previousNorm = Infinity;
  let iterations = 0;
  const notConverged = (what: string): RangeError =>
    new RangeError(
      `${where}: Newton–Schulz ${what}: matrix + ${damping}·I is not positive definite, too ill-conditioned ` +
        `for float32, or the initial guess is too far from its inverse`,
    );
  try {
    for (;;) {
      const residual = tf.tidy(() => tf.sub<tf.Tensor2D>(identity, tf.matMul(damped, iterate)));
      const norm = tf.tidy(() => tf.sqrt(tf.sum(tf.square(residual))));
      const residualNorm = norm.dataSync()[0] as number;
      norm.dispose();
      if (!Number.isFinite(residualNorm)) {
        residual.dispose();
        throw notConverged(`diverged after ${iterations} iterations`);
      }
      if (best === undefined || residualNorm < best.residualNorm) {
        if (best !== undefined && best.iterate !== iterate) best.iterate.dispose();
        best = { iterate, residualNorm };
      }
      // In exact arithmetic ‖R_{k+1}‖ = ‖R_k²‖ < ‖R_k‖ once it is below 1 (and for the default start
      // always), and it at least halves once below 1/2: when it does not, float32 rounding is reached.
      const noProgress = residualNorm >= previousNorm || (previousNorm < 0.5 && residualNorm > previousNorm / 2);
      if (noProgress || residualNorm === 0) {
        residual.dispose();
        if (best.residualNorm >= 1) {
          throw notConverged(`stopped making progress at ‖I − (A + λI)X‖_F = ${best.residualNorm}`);
        }
        break;
      }
      if (iterations === maxIterations) {
        residual.dispose();
        throw notConverged(`did not converge in ${maxIterations} iterations (‖I − (A + λI)X‖_F = ${residualNorm})`);
      }
      const current = iterate;
      iterate = tf.tidy(() => tf.add<tf.Tensor2D>(current, tf.matMul(current, residual)));
      residual.dispose();
      if (best.iterate !== current) current.dispose();
      previousNorm = residualNorm;
      iterations += 1;
    }
    const chosen = best.iterate;
    const inverse = tf.tidy(() => tf.mul<tf.Tensor2D>(tf.add(chosen, tf.transpose(chosen)), tf.scalar(0.5)));
    return { inverse, iterations, residualNorm: best.residualNorm };
  } finally {
    if (best !== undefined) best.iterate.dispose();
    if (best?.iterate !== iterate) iterate.dispose();
    identity.dispose();
    damped.dispose();
  }
}
