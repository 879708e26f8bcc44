import { checkFloat32, checkNumber, checkOneOf, checkSquareMatrix, selectByScalar } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';

/**
 * The norm the stabiliser watches:
 * - `'inf'` — the induced ∞-norm `maxᵢ Σⱼ |Pᵢⱼ|` (largest absolute row sum), which the paper watches;
 * - `'max'` — the largest absolute entry `maxᵢⱼ |Pᵢⱼ|`, which the authors' code watches;
 * - `'fro'` — the Frobenius norm `√(Σᵢⱼ Pᵢⱼ²)`.
 *
 * For a `d × d` matrix, `max ≤ inf ≤ d·max` and `max ≤ fro ≤ d·max`; for a symmetric positive
 * definite one, `max ≤ λmax ≤ inf` and `λmax ≤ fro ≤ √d·λmax`.
 */
export type FactorNorm = 'inf' | 'max' | 'fro';

/** The norms of {@link FactorNorm}, in a list for validation and iteration. */
export const FACTOR_NORMS: readonly FactorNorm[] = ['inf', 'max', 'fro'];

/**
 * What the stabiliser does when it fires: `'blend'` — `ζF⁻¹ + (1−ζ)I` (eq. 7/8, the paper);
 * `'reset'` — `I` (the authors' code).
 */
export type StabilizeMode = 'blend' | 'reset';

/** Options shared by both modes of {@link stabilize} and {@link stabilizeDeferred}. */
interface StabilizeOptionsBase {
  /** Threshold ε > 0: the stabiliser fires when `‖F⁻¹‖ > ε`. */
  readonly epsilon: number;
  /** The norm compared with ε. Default `'inf'` (the paper's). */
  readonly norm?: FactorNorm;
}

/** The paper's stabiliser (eq. 7/8): when it fires, `F⁻¹ ← ζF⁻¹ + (1−ζ)I`. */
export interface BlendStabilizeOptions extends StabilizeOptionsBase {
  /** Weight ζ ∈ [0, 1] kept of the old factor. */
  readonly zeta: number;
  /** `'blend'`, the default. */
  readonly mode?: 'blend';
}

/** The authors' code's stabiliser: when it fires, `F⁻¹ ← I`. */
export interface ResetStabilizeOptions extends StabilizeOptionsBase {
  /** Not used by a reset; validated in [0, 1] when given, so options can switch mode freely. */
  readonly zeta?: number;
  readonly mode: 'reset';
}

/** Options of {@link stabilize} and {@link stabilizeDeferred}. */
export type StabilizeOptions = BlendStabilizeOptions | ResetStabilizeOptions;

/**
 * The authors' code's stabiliser as options: reset to I when the largest absolute entry exceeds 2.
 * (Their code flags the layer and resets both factors at the next update; a caller that wants that
 * exact timing checks both factors and resets both.)
 */
export const REFERENCE_STABILIZER: ResetStabilizeOptions = { epsilon: 2, norm: 'max', mode: 'reset' };

/**
 * `‖F⁻¹‖` in the chosen {@link FactorNorm}, as a scalar tensor (nothing is read back).
 * The Frobenius norm is computed as `m·√(Σ(Pᵢⱼ/m)²)` with `m = max|Pᵢⱼ|`, so it does not overflow
 * while the norm itself is representable. NaN anywhere gives NaN.
 *
 * @param inverse - a `[d, d]` float32 matrix. Not disposed.
 * @param norm - which norm. Default `'inf'`.
 * @returns a new scalar tensor.
 * @throws RangeError for a non-square matrix or an unknown norm.
 */
export function factorNorm(inverse: tf.Tensor2D, norm: FactorNorm = 'inf'): tf.Scalar {
  const where = 'factorNorm';
  checkSquareMatrix(where, 'inverse', inverse);
  checkOneOf(where, 'norm', norm, FACTOR_NORMS);
  return computeNorm(inverse, norm);
}

function computeNorm(inverse: tf.Tensor2D, norm: FactorNorm): tf.Scalar {
  return tf.tidy(() => {
    const magnitudes = tf.abs(inverse);
    if (norm === 'inf') return tf.max(tf.sum(magnitudes, 1));
    const largest = tf.max(magnitudes);
    if (norm === 'max') return largest;
    // Dividing by m (or by 1 for the zero matrix) keeps the squares in range.
    const divisor = tf.where(tf.greater(largest, 0), largest, tf.onesLike(largest));
    return tf.mul(largest, tf.sqrt(tf.sum(tf.square(tf.div(magnitudes, divisor)))));
  }) as tf.Scalar;
}

interface ResolvedStabilizeOptions {
  readonly epsilon: number;
  readonly zeta: number;
  readonly norm: FactorNorm;
  readonly mode: StabilizeMode;
}

function resolveOptions(where: string, inverse: tf.Tensor2D, options: StabilizeOptions): ResolvedStabilizeOptions {
  checkSquareMatrix(where, 'inverse', inverse);
  checkFloat32(where, 'inverse', inverse);
  const mode = checkOneOf(where, 'mode', options?.mode ?? 'blend', ['blend', 'reset'] as const);
  const epsilon = checkNumber(where, 'epsilon', options?.epsilon, { min: 0, minExclusive: true });
  const norm = checkOneOf(where, 'norm', options?.norm ?? 'inf', FACTOR_NORMS);
  const zetaGiven = options?.zeta;
  const zeta =
    mode === 'blend' || zetaGiven !== undefined ? checkNumber(where, 'zeta', zetaGiven, { min: 0, max: 1 }) : 0;
  return { epsilon, zeta, norm, mode };
}

/** The factor the stabiliser puts in place when it fires. */
function stabilizedFactor(inverse: tf.Tensor2D, { zeta, mode }: ResolvedStabilizeOptions): tf.Tensor2D {
  return tf.tidy(() => {
    const identity = tf.eye(inverse.shape[0]);
    if (mode === 'reset') return identity;
    return tf.add(tf.mul(inverse, tf.scalar(zeta)), tf.mul(identity, tf.scalar(1 - zeta)));
  }) as tf.Tensor2D;
}

/**
 * MKOR's norm-based stabiliser (eq. 7/8; Algorithm 1, lines 5–6):
 *
 *     F̂⁻¹ = ζF⁻¹ + (1−ζ)I   if ‖F⁻¹‖ > ε      (mode 'blend', the paper)
 *     F̂⁻¹ = I               if ‖F⁻¹‖ > ε      (mode 'reset', the authors' code; see REFERENCE_STABILIZER)
 *     F̂⁻¹ = F⁻¹             otherwise
 *
 * The blend of a symmetric positive definite factor stays symmetric positive definite (its
 * eigenvalues λ become ζλ + 1 − ζ, so a blend with ζ < 1 also lifts the smallest one to at
 * least 1 − ζ). Reads one scalar back to decide; {@link stabilizeDeferred} reads nothing.
 *
 * Ownership: `inverse` in the result is always a new tensor the caller owns — when the
 * stabiliser did not fire it is a `tf.clone` of the input (which shares the input's storage, so no
 * copy is made). Dispose it independently of the input. A NaN norm compares false: a factor holding
 * NaN is returned unchanged (`fired: false`); detect non-finite factors separately.
 *
 * @param inverse - the inverse factor `F⁻¹`, float32 `[d, d]`. Not disposed.
 * @returns the stabilised factor and whether the stabiliser fired.
 * @throws RangeError for a non-square matrix, ε ≤ 0, ζ outside [0, 1] (required for `'blend'`),
 *   an unknown norm or mode; TypeError for a non-float32 tensor.
 */
export function stabilize(inverse: tf.Tensor2D, options: StabilizeOptions): { inverse: tf.Tensor2D; fired: boolean } {
  const resolved = resolveOptions('stabilize', inverse, options);
  const normValue = computeNorm(inverse, resolved.norm);
  // Compared in float32, as stabilizeDeferred does on the device.
  const fired = (normValue.dataSync()[0] as number) > Math.fround(resolved.epsilon);
  normValue.dispose();
  return { inverse: fired ? stabilizedFactor(inverse, resolved) : tf.clone(inverse), fired };
}

/**
 * {@link stabilize} without any read-back, for hot paths: the test `‖F⁻¹‖ > ε` stays on the
 * device as a boolean scalar and the factor is chosen with `selectByScalar`, so both branches are
 * computed (O(d²) extra work) and nothing waits for the device.
 *
 * @param inverse - the inverse factor `F⁻¹`, float32 `[d, d]`. Not disposed.
 * @returns `inverse`, a new `[d, d]` tensor (the stabilised factor or a copy of the input), and
 *   `fired`, a new bool scalar tensor; the caller owns and disposes both.
 * @throws as {@link stabilize}.
 */
export function stabilizeDeferred(inverse: tf.Tensor2D, options: StabilizeOptions): { inverse: tf.Tensor2D; fired: tf.Scalar } {
  const resolved = resolveOptions('stabilizeDeferred', inverse, options);
  return tf.tidy(() => {
    const fired = tf.greater(computeNorm(inverse, resolved.norm), tf.scalar(resolved.epsilon)) as tf.Scalar;
    return { inverse: selectByScalar(fired, stabilizedFactor(inverse, resolved), inverse), fired };
  });
}
