import { checkFinite } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';

import { checkRows } from './rank1';

/**
 * How well the rank-1 statistic describes the rows' second moment (MKOR paper, Fig. 5):
 *
 *     error = ‖C − c cᵀ‖_F / ‖C‖_F,    C = (1/n) XᵀX,    c = (1/n) Σᵢ xᵢ
 *
 * over the `n` rows `xᵢ` of `rows` (every axis but the last flattened, as in `rank1Vector`).
 * `C − c cᵀ` is the rows' covariance, so the error is the share of the second moment that the
 * mean does not explain: 0 when all rows are equal, near 1 for zero-mean rows. Because the
 * covariance and `c cᵀ` are both positive semi-definite the error always lies in `[0, 1]`.
 * All-zero rows give 0 (the rank-1 statistic is then exact).
 *
 * Numerics: the rows are first divided by their largest absolute entry (the ratio does not
 * change), so nothing overflows or underflows in float32; the covariance is formed from the
 * centred rows rather than as the difference `C − c cᵀ`, which would cancel catastrophically
 * when the mean dominates; and the norms use the `min(n, d)`-sized Gram matrix, since
 * `‖XᵀX‖_F = ‖XXᵀ‖_F`. A diagnostic: it reads two numbers back from the backend.
 *
 * @param rows a tensor of rank ≥ 1 with finite entries (throws on NaN/Inf).
 */
export function rank1ApproximationError(rows: tf.Tensor): number {
  const where = 'rank1ApproximationError';
  const x = checkRows(where, 'rows', rows);
  let norms: tf.Tensor;
  try {
    checkFinite(where, 'rows', x);
    norms = tf.tidy(() => {
      const d = x.shape[x.rank - 1] as number;
      const n = x.size / d;
      const matrix = tf.reshape(x, [n, d]) as tf.Tensor2D;
      const largest = tf.max(tf.abs(matrix));
      const scaled = tf.div(matrix, tf.where(tf.greater(largest, 0), largest, tf.onesLike(largest))) as tf.Tensor2D;
      const centred = tf.sub(scaled, tf.mean(scaled, 0)) as tf.Tensor2D;
      // ‖AᵀA‖_F = ‖AAᵀ‖_F: use whichever Gram matrix is smaller. The 1/n factors cancel.
      const gramNorm = (a: tf.Tensor2D): tf.Tensor =>
        tf.norm(n <= d ? tf.matMul(a, a, false, true) : tf.matMul(a, a, true, false));
      return tf.stack([gramNorm(centred), gramNorm(scaled)]);
    });
  } finally {
    if (x !== rows) x.dispose();
  }
  const [covarianceNorm, secondMomentNorm] = norms.dataSync() as Float32Array;
  norms.dispose();
  return (secondMomentNorm as number) === 0 ? 0 : Math.min(1, (covarianceNorm as number) / (secondMomentNorm as number));
}
