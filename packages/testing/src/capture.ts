/**
 * Float64 references for `@mkor/capture`: a layer's affine part and the gradient of a loss with
 * respect to its pre-activation output, through the activations tfjs-layers fuses or applies.
 * Plain TypeScript, independent of tfjs.
 */
import { type Matrix64, matmul, matrix } from './float64';

/** `rows · kernel + bias` for `[n, d_in]` rows and a `[d_in, d_out]` kernel: a layer's pre-activation output. */
export function affine64(rows: Matrix64, kernel: Matrix64, bias?: ArrayLike<number>): Matrix64 {
  const out = matmul(rows, kernel);
  if (bias !== undefined) {
    for (let i = 0; i < out.rows; i++) {
      for (let j = 0; j < out.cols; j++) out.data[i * out.cols + j] = (out.data[i * out.cols + j] as number) + (bias[j] as number);
    }
  }
  return out;
}

/** The activations {@link activate64} and {@link preActivationGradient64} know. */
export type Activation64 = 'linear' | 'relu' | 'elu' | 'tanh' | 'sigmoid' | 'softmax';

function softmaxRow(z: Float64Array): Float64Array {
  const top = Math.max(...z);
  const e = z.map((v) => Math.exp(v - top));
  const total = e.reduce((s, v) => s + v, 0);
  return e.map((v) => v / total);
}

function mapRows(m: Matrix64, f: (row: Float64Array, i: number) => Float64Array): Matrix64 {
  const out = matrix(m.rows, m.cols);
  for (let i = 0; i < m.rows; i++) out.data.set(f(m.data.subarray(i * m.cols, (i + 1) * m.cols), i), i * m.cols);
  return out;
}

/** `act(z)` row by row (softmax over each row's entries). */
export function activate64(z: Matrix64, activation: Activation64): Matrix64 {
  switch (activation) {
    case 'linear':
      return matrix(z.rows, z.cols, z.data);
    case 'relu':
      return matrix(z.rows, z.cols, z.data.map((v) => Math.max(v, 0)));
    case 'elu':
      return matrix(z.rows, z.cols, z.data.map((v) => (v > 0 ? v : Math.expm1(v))));
    case 'tanh':
      return matrix(z.rows, z.cols, z.data.map(Math.tanh));
    case 'sigmoid':
      return matrix(z.rows, z.cols, z.data.map((v) => 1 / (1 + Math.exp(-v))));
    case 'softmax':
      return mapRows(z, softmaxRow);
  }
}

/**
 * `∂Loss/∂z` from `∂Loss/∂act(z)` (`upstream`, same shape as `z`): the chain rule through the
 * activation, `upstream ⊙ act'(z)` elementwise, and for softmax per row
 * `s ⊙ (upstream − ⟨upstream, s⟩)` with `s = softmax(z)`.
 */
export function preActivationGradient64(z: Matrix64, upstream: Matrix64, activation: Activation64): Matrix64 {
  const elementwise = (derivative: (v: number) => number): Matrix64 =>
    matrix(z.rows, z.cols, z.data.map((v, k) => (upstream.data[k] as number) * derivative(v)));
  switch (activation) {
    case 'linear':
      return elementwise(() => 1);
    case 'relu':
      return elementwise((v) => (v > 0 ? 1 : 0));
    case 'elu':
      return elementwise((v) => (v > 0 ? 1 : Math.exp(v)));
    case 'tanh':
      return elementwise((v) => 1 - Math.tanh(v) ** 2);
    case 'sigmoid':
      return elementwise((v) => {
        const s = 1 / (1 + Math.exp(-v));
        return s * (1 - s);
      });
    case 'softmax':
      return mapRows(z, (row, i) => {
        const s = softmaxRow(row);
        const up = upstream.data.subarray(i * z.cols, (i + 1) * z.cols);
        const inner = s.reduce((total, v, j) => total + v * (up[j] as number), 0);
        return s.map((v, j) => v * ((up[j] as number) - inner));
      });
  }
}
