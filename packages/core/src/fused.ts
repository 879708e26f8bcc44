import * as tf from '@tensorflow/tfjs-core';

/**
 * The fused kernels a backend may provide, by what they compute. Each replaces a chain of
 * elementwise kernels that reads and writes whole tensors several times with one pass over them.
 * The functions that use them (`finiteFlag` here, `frobeniusNorm` and `rescaleToNorm` of
 * `@mkor/grad-rescale`, `scaleByAdam` of `@mkor/first-order`, the Sherman–Morrison update of
 * `@mkor/sherman-morrison`) run the fused kernel where the current backend registers one, and the
 * same computation from tfjs's own kernels everywhere else. `@mkor/wasm-kernels` registers all of
 * them for the wasm backend (`registerWasmKernels`).
 *
 * The contract of each, inputs by name:
 * - `finiteFlag`: inputs `x0 … x(n−1)`, attribute `sums`: the last `2·sums` inputs are pairs
 *   `(a, b)`. Output: a bool scalar, true when every entry of every other input and every float32
 *   sum `a + b` of every pair is finite.
 * - `euclideanNorms`: inputs `x0 … x(n−1)`. Output: float32 `[n]`, `‖xᵢ‖₂` over every entry, the
 *   sum of squares taken in float64 (no overflow or underflow) and rounded once.
 * - `rescaleToNorm`: inputs `update`, `gradient` (one shape). Outputs: `[rescaled, factor]` with
 *   `factor = ‖gradient‖ / ‖update‖` (float32 scalar) and `rescaled = factor · update` when the
 *   factor is finite and positive, else `gradient` when it is finite, else zeros.
 * - `adam`: inputs `gradient`, `firstMoment`, `secondMoment` (one shape), attributes `beta1`,
 *   `beta2`, `epsilon`, `correction1`, `correction2`. Outputs `[m', v', u]`:
 *   `m' = m·β₁ + g·(1−β₁)`, `v' = v·β₂ + g²·(1−β₂)`, `u = (m'/c₁)/(√(v'/c₂) + ε)`, each operation
 *   rounded to float32 in that order (so the result equals the unfused one bit for bit).
 * - `rankOneUpdate`: inputs `matrix` `[d, d]`, `u` (`d` entries), `coefficient` (float32 scalar),
 *   attributes `scale`, `divisor`. Output `[d, d]`:
 *   `(matrix[i, j]·scale − (u[i]·u[j])·coefficient) / divisor`, rounded in that order.
 * - `denseRefresh`: MKOR's refresh of one dense inverse factor (`@mkor/mkor`'s block): inputs
 *   `inverse` `[d, d]` (symmetric) and `v` (`d` entries); attributes `stabilize` (1 or 0),
 *   `epsilon`, `zeta`, `norm` (0 `'inf'`, 1 `'max'`, 2 `'fro'`), `form` (0 `'exact'`, 1 `'paper'`),
 *   `gamma`. Outputs `[inverse', fired, finite]`: with `P̂ = ζP + (1−ζ)I` when `stabilize` and
 *   `‖P‖ > ε` (`fired`), else `P`, and `v` scaled by a power of two σ (`w = v/σ`), `u = P̂w`,
 *   `q = wᵀu`, β = γ, α = 1 − γ: `'exact'` `(P̂ − c·uuᵀ)/β` with `c = α/(β/σ² + α·q)`, `'paper'`
 *   `βP̂ + c·uuᵀ` with `c = α/(β²(1/σ² + βα·q))`; `finite` false and `inverse'` the identity when
 *   an entry is NaN or ±Inf. Equal to the unfused composition up to float32 rounding (not bit
 *   for bit: sums are taken in another order).
 */
export const FUSED_KERNELS = {
  finiteFlag: 'MkorFiniteFlag',
  euclideanNorms: 'MkorEuclideanNorms',
  rescaleToNorm: 'MkorRescaleToNorm',
  adam: 'MkorAdam',
  rankOneUpdate: 'MkorRankOneUpdate',
  denseRefresh: 'MkorDenseRefresh',
} as const;

/** A fused kernel, by what it computes (see {@link FUSED_KERNELS}). */
export type FusedKernel = keyof typeof FUSED_KERNELS;

/** Whether the current backend registers the fused kernel `kernel`. */
export function hasFusedKernel(kernel: FusedKernel): boolean {
  return tf.getKernel(FUSED_KERNELS[kernel], tf.getBackend()) !== undefined;
}

/**
 * Runs the fused kernel `kernel` on the current backend (check {@link hasFusedKernel} first).
 * Inputs are not disposed; outputs are new tensors, tracked by `tf.tidy` like any op's.
 */
export function runFusedKernel<T extends tf.Tensor | readonly tf.Tensor[]>(
  kernel: FusedKernel,
  inputs: Record<string, tf.Tensor>,
  attrs: Record<string, number> = {},
): T {
  return tf.engine().runKernel(FUSED_KERNELS[kernel], inputs, attrs) as unknown as T;
}
