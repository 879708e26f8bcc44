import type * as tf from '@tensorflow/tfjs-core';

import type { GradientCount } from './layer-kind';

/**
 * The kind of a captured layer: the `kind` of its entry in the table of layer kinds
 * (`'dense'` and `'conv2d'` by default, any other name a user's entry gives).
 */
export type LayerKind = 'dense' | 'conv2d' | (string & {});

/**
 * One layer a second-order optimizer preconditions. Its kernel, seen as the matrix
 * `W ∈ R^{inputDim × outputDim}` (the transpose of the paper's `d_out × d_in`), computes the
 * pre-activation output `y = x W (+ b)` of every row `x`.
 */
export interface SecondOrderLayer {
  /** The layer's name (`outer/inner` for a layer inside a nested model). */
  readonly name: string;
  /** Its kind, which says how its statistics were computed (its rows: input rows or unfolded patches). */
  readonly kind: LayerKind;
  /**
   * What `n` undoes a mean-reduced loss's `1/batch` in `g` (the authors' `'sum'` scale, `n·g`):
   * `'rows'`, the statistics' `rows` (dense layers), or `'samples'`, their `samples` (conv2d
   * layers, whose loss averages over samples, not output positions). Given by the layer's kind,
   * so a consumer scales by it without testing `kind`.
   */
  readonly gradientCount: GradientCount;
  /** The name of the kernel's `tf.Variable`, as it appears in `optimizer.applyGradients`. */
  readonly kernelName: string;
  /** The name of the bias's `tf.Variable`, when the layer has a bias. */
  readonly biasName?: string;
  /** Rows of the kernel as a matrix: `d_in` for dense, `kh·kw·cin` for conv2d. */
  readonly inputDim: number;
  /** Columns of the kernel as a matrix: `d_out` for dense, `cout` for conv2d. */
  readonly outputDim: number;
  /**
   * The kernel variable's shape: `[d_in, d_out]` or `[kh, kw, cin, cout]`. Reshape the kernel
   * gradient to `[inputDim, outputDim]` to precondition it and back to this shape afterwards.
   */
  readonly kernelShape: readonly number[];
}

/** A layer whose variables a second-order optimizer leaves to its first-order backend. */
export interface FirstOrderLayer {
  readonly name: string;
  /** Names of its trainable `tf.Variable`s. */
  readonly variables: string[];
  /** Why the layer is not second-order, in words. */
  readonly reason: string;
}

/**
 * The latest committed pair of rank-1 statistics of one layer (MKOR Algorithm 1, step 1):
 *
 *     a = (1/n) Σᵢ xᵢ,     g = (1/n) Σᵢ ∂Loss/∂yᵢ
 *
 * over the `n` rows of one training step (a forward pass and its backward pass). The tensors are
 * owned by the registry: do not dispose them, and clone them to keep them past the layer's next
 * commit, which disposes them.
 */
export interface LayerStatistics {
  /** Mean of the layer's input rows (unfolded patches for conv2d), length `inputDim`, no bias 1. */
  readonly a: tf.Tensor1D;
  /** Mean of the gradient of the loss with respect to the pre-activation output rows, length `outputDim`. */
  readonly g: tf.Tensor1D;
  /** `n`, the rows averaged: batch, batch·seq, or batch·outHeight·outWidth. */
  readonly rows: number;
  /** The batch size: the leading dimension of the layer's output. */
  readonly samples: number;
  /** How many pairs this layer has committed, this one included (1, 2, ...): fresh or stale. */
  readonly step: number;
  /**
   * The full second moments KFAC needs, recorded only when the capture was created with
   * `covariance: true` (see {@link CovarianceStatistics}); absent otherwise.
   */
  readonly covariance?: CovarianceStatistics;
}

/**
 * The uncentred second moments of one layer on one step, over the same `n` rows as `a` and `g`
 * (KFAC's Kronecker factors before their moving average, spec eq. 3/4):
 *
 *     A = (1/n) Σᵢ xᵢ xᵢᵀ = (1/n) XᵀX          (d_in × d_in; conv2d: X the unfolded patches)
 *     G = (1/n) Σᵢ dyᵢ dyᵢᵀ                    (d_out × d_out; dyᵢ = ∂Loss/∂yᵢ, pre-activation)
 *
 * The scaling is exactly `1/n` with `n = rows` on both sides: with a mean-reduced loss each
 * `dyᵢ` carries the loss's `1/batch`, which a consumer may undo by multiplying `G` by `batch²`.
 * A bias is not in `A`; a consumer that folds it in (a constant 1 appended to every row) uses
 *
 *     A_bias = [[A, a], [aᵀ, 1]]                ((d_in + 1) × (d_in + 1), `a` the row mean)
 *
 * Owned by the registry like `a` and `g`: do not dispose; clone to keep past the next commit.
 */
export interface CovarianceStatistics {
  /** `(1/n) XᵀX`, `[inputDim, inputDim]`. */
  readonly a: tf.Tensor2D;
  /** `(1/n) Σᵢ dyᵢ dyᵢᵀ`, `[outputDim, outputDim]`. */
  readonly g: tf.Tensor2D;
}

/** What a second-order optimizer reads: which layer is which, and their latest statistics. */
export interface CaptureRegistry {
  /** The layers whose statistics are captured. */
  readonly secondOrder: readonly SecondOrderLayer[];
  /** The layers with trainable variables that are not captured, and why. */
  readonly firstOrder: readonly FirstOrderLayer[];
  /** A readable table: every layer, second- or first-order, its shape and variables, and why. */
  describe(): string;
  /** The second-order layer owning a kernel or bias variable of this name, if any. */
  layerForVariable(variableName: string): SecondOrderLayer | undefined;
  /** The latest committed statistics of a second-order layer; undefined before its first backward pass. */
  statistics(layerName: string): LayerStatistics | undefined;
  /** Undoes any wrapping and disposes every tensor the registry holds. Idempotent. */
  release(): void;
}
