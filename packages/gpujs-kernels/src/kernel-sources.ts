/**
 * The gpu.js kernels, as source text. gpu.js reads a kernel function's source and translates it
 * to GLSL (or runs it as JavaScript in cpu mode); given as text, the kernels survive any bundler
 * or minifier a user's build applies to this package, which may rewrite a function's body into
 * JavaScript gpu.js cannot translate.
 *
 * Every kernel writes a flat row-major output (one thread an entry, `this.thread.x`) and reads
 * flat row-major inputs. The entry's row and column come from {@link ROW_AND_COLUMN}: a float
 * division rounded down, then corrected by one either way, so the split stays exact where the
 * GPU's division is not correctly rounded.
 */

/** GLSL-safe split of `this.thread.x` into `row` and `column` of a `[rows, columns]` output (`this.constants.columns`). */
const ROW_AND_COLUMN = `
  const columns = this.constants.columns;
  let row = Math.floor((this.thread.x + 0.5) / columns);
  let column = this.thread.x - row * columns;
  if (column < 0) { row = row - 1; column = column + columns; }
  if (column >= columns) { row = row + 1; column = column - columns; }`;

/** `u = P·w`: `u[i] = Σₖ P[i, k]·w[k]`, P `[d, d]` (`constants.inner` = d). Output `[d]`. */
export const MATRIX_VECTOR = `function (matrix, vector) {
  const inner = this.constants.inner;
  let sum = 0;
  for (let k = 0; k < inner; k++) {
    sum += matrix[this.thread.x * inner + k] * vector[k];
  }
  return sum;
}`;

/**
 * The refresh's one pass over P: `P'[i, j] = a·P[i, j] + b·u[i]·u[j] + c·[i = j]`, P `[d, d]`.
 * `u[i]·u[j]` is rounded before it is scaled, so entries (i, j) and (j, i) are computed from the
 * same operands by the same operations: a symmetric P gives a symmetric P'.
 */
export const RANK_ONE_PASS = `function (matrix, u, factorScale, outerScale, identityScale) {
  ${ROW_AND_COLUMN}
  const product = u[row] * u[column];
  let value = factorScale * matrix[this.thread.x] + outerScale * product;
  if (row == column) { value = value + identityScale; }
  return value;
}`;

/** `X = A·G`: `X[i, j] = Σₖ A[i, k]·G[k, j]`, A `[n, n]`, G `[n, m]` (`constants.inner` = n, `columns` = m). Output `[n, m]`. */
export const LEFT_PRODUCT = `function (left, gradient) {
  ${ROW_AND_COLUMN}
  const inner = this.constants.inner;
  let sum = 0;
  for (let k = 0; k < inner; k++) {
    sum += left[row * inner + k] * gradient[k * columns + column];
  }
  return sum;
}`;

/** `Y = X·B`: `Y[i, j] = Σₖ X[i, k]·B[k, j]`, X `[n, m]`, B `[m, m]` (`constants.inner` = m = `columns`). Output `[n, m]`. */
export const RIGHT_PRODUCT = `function (matrix, right) {
  ${ROW_AND_COLUMN}
  const inner = this.constants.inner;
  let sum = 0;
  for (let k = 0; k < inner; k++) {
    sum += matrix[row * inner + k] * right[k * columns + column];
  }
  return sum;
}`;

/**
 * The projection of the low-rank left factor: `S = diag(m)·Uᵀ·G`, `S[k, j] = m[k]·Σᵢ U[i, k]·G[i, j]`,
 * U `[n, r]`, G `[n, m]` (`constants.inner` = n, `rank` = r, `columns` = m). Output `[r, m]`.
 */
export const LEFT_PROJECTION = `function (basis, weights, gradient) {
  ${ROW_AND_COLUMN}
  const inner = this.constants.inner;
  const rank = this.constants.rank;
  let sum = 0;
  for (let i = 0; i < inner; i++) {
    sum += basis[i * rank + row] * gradient[i * columns + column];
  }
  return weights[row] * sum;
}`;

/**
 * The low-rank left factor applied: `X = c·G + U·S`, `X[i, j] = c·G[i, j] + Σₖ U[i, k]·S[k, j]`,
 * with S from {@link LEFT_PROJECTION} (`constants.rank` = r, `columns` = m). Output `[n, m]`.
 */
export const LEFT_COMBINATION = `function (scale, gradient, basis, projection) {
  ${ROW_AND_COLUMN}
  const rank = this.constants.rank;
  let sum = 0;
  for (let k = 0; k < rank; k++) {
    sum += basis[row * rank + k] * projection[k * columns + column];
  }
  return scale * gradient[this.thread.x] + sum;
}`;

/**
 * The projection of the low-rank right factor: `T = X·U·diag(m)`, `T[i, k] = m[k]·Σⱼ X[i, j]·U[j, k]`,
 * X `[n, m]`, U `[m, r]` (`constants.inner` = m, `columns` = r). Output `[n, r]`.
 */
export const RIGHT_PROJECTION = `function (matrix, basis, weights) {
  ${ROW_AND_COLUMN}
  const inner = this.constants.inner;
  let sum = 0;
  for (let j = 0; j < inner; j++) {
    sum += matrix[row * inner + j] * basis[j * columns + column];
  }
  return weights[column] * sum;
}`;

/**
 * The low-rank right factor applied: `Y = c·X + T·Uᵀ`, `Y[i, j] = c·X[i, j] + Σₖ T[i, k]·U[j, k]`,
 * with T from {@link RIGHT_PROJECTION} (`constants.rank` = r, `columns` = m). Output `[n, m]`.
 */
export const RIGHT_COMBINATION = `function (scale, matrix, basis, projection) {
  ${ROW_AND_COLUMN}
  const rank = this.constants.rank;
  let sum = 0;
  for (let k = 0; k < rank; k++) {
    sum += projection[row * rank + k] * basis[column * rank + k];
  }
  return scale * matrix[this.thread.x] + sum;
}`;
