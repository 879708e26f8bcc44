import { type Hyperparameter, addAll, resolveHyperparameter } from '@mkor/core';
import { rescaleFactorSummedNorms, rescaleToNorm, rescaleToNormWithFactor, rescaleToSummedNorms } from '@mkor/grad-rescale';
import * as tf from '@tensorflow/tfjs-core';

import { type BlockLayer, splitKernelAndBias } from './layers';

/**
 * How the preconditioned updates are scaled before the first-order backend:
 * - `'kl-clip'` (KAISA, Eva): every update times `ν = min(1, sqrt(κ / |Σ_layers Σ ΔW·∇W·lr²|))`;
 * - `'frobenius'` (MKOR step 6): each layer's `[ΔW Δb]` rescaled to the Frobenius norm of `[∇W ∇b]`;
 * - `'summed-norms'` (the authors' MKOR code): `ΔW` and `Δb` rescaled together by
 *   `(‖∇W‖ + ‖∇b‖)/(‖ΔW‖ + ‖Δb‖)`;
 * - `'none'`.
 * The rescales fall back to the raw gradient where their factor is not finite and positive (see
 * `@mkor/grad-rescale`).
 */
export type UpdateScaling = 'kl-clip' | 'frobenius' | 'summed-norms' | 'none';

/** Every {@link UpdateScaling}. */
export const UPDATE_SCALINGS: readonly UpdateScaling[] = ['kl-clip', 'frobenius', 'summed-norms', 'none'];

/** The scaling with what it needs: κ and the learning rate for the KL-clip. */
export interface ResolvedUpdateScaling {
  readonly scaling: UpdateScaling;
  /** κ of the KL-clip. */
  readonly klClip: number;
  /** `lr` of the KL-clip (a number or a schedule of the preconditioner's step); undefined unless `scaling` is `'kl-clip'`. */
  readonly learningRate: Hyperparameter | undefined;
}

/**
 * The KL-clip factor of KAISA and Eva, `ν = min(1, sqrt(κ / |Σ ΔW·∇W·lr²|))`, the sum over every
 * entry of every preconditioned layer (`ΔW` the preconditioned update, `∇W` the gradient, biases
 * included). A zero sum gives ν = 1.
 */
export function klClipFactor(pairs: readonly { update: tf.Tensor; gradient: tf.Tensor }[], learningRate: number, kappa: number): tf.Scalar {
  return tf.tidy(() => {
    if (pairs.length === 0) return tf.scalar(1);
    const inner = addAll(pairs.map(({ update, gradient }) => tf.sum(tf.mul(update, gradient))));
    const divisor = tf.abs(tf.mul(inner, tf.scalar(learningRate * learningRate)));
    return tf.minimum(tf.scalar(1), tf.sqrt(tf.div(tf.scalar(kappa), divisor)));
  });
}

/** One layer's preconditioned update and the gradient it came from, both `[foldedInputDim, outputDim]`. */
export interface LayerUpdate {
  readonly layer: BlockLayer;
  readonly update: tf.Tensor2D;
  readonly gradient: tf.Tensor2D;
}

function summedNormParts(layer: BlockLayer, update: tf.Tensor2D, gradient: tf.Tensor2D) {
  const u = splitKernelAndBias(layer, update);
  const g = splitKernelAndBias(layer, gradient);
  return {
    update: { weight: u.kernel, ...(u.bias === undefined ? {} : { bias: u.bias }) },
    gradient: { weight: g.kernel, ...(g.bias === undefined ? {} : { bias: g.bias }) },
  };
}

/**
 * Scales the layers' preconditioned updates as `scaling` says, at the preconditioner's `step`.
 * Returns the scaled updates (in the order given) and, when `withFactors` (or for the KL-clip,
 * whose factor is computed anyway), the factor applied to each layer as a scalar tensor;
 * `'none'` has no factors.
 */
export function scaleLayerUpdates(
  where: string,
  scaling: ResolvedUpdateScaling,
  step: number,
  layers: readonly LayerUpdate[],
  withFactors: boolean,
): { updates: tf.Tensor2D[]; factors: tf.Scalar[] } {
  switch (scaling.scaling) {
    case 'none':
      return { updates: layers.map((l) => l.update), factors: [] };
    case 'frobenius': {
      if (!withFactors) return { updates: layers.map(({ update, gradient }) => rescaleToNorm(update, gradient) as tf.Tensor2D), factors: [] };
      const both = layers.map(({ update, gradient }) => rescaleToNormWithFactor(update, gradient));
      return { updates: both.map((b) => b.rescaled as tf.Tensor2D), factors: both.map((b) => b.factor) };
    }
    case 'summed-norms': {
      const parts = layers.map(({ layer, update, gradient }) => summedNormParts(layer, update, gradient));
      return {
        updates: parts.map((p) => {
          const rescaled = rescaleToSummedNorms(p.update, p.gradient);
          const weight = rescaled.weight as tf.Tensor2D;
          return rescaled.bias === undefined ? weight : tf.concat<tf.Tensor2D>([weight, rescaled.bias as tf.Tensor2D], 0);
        }),
        factors: withFactors ? parts.map((p) => rescaleFactorSummedNorms(p.update, p.gradient)) : [],
      };
    }
    case 'kl-clip': {
      const learningRate = resolveHyperparameter(scaling.learningRate as Hyperparameter, step, `${where}: learningRate`);
      const nu = klClipFactor(layers, learningRate, scaling.klClip);
      return { updates: layers.map(({ update }) => tf.mul(update, nu) as tf.Tensor2D), factors: layers.map(() => nu) };
    }
  }
}
