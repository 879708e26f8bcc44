import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Matrix64,
  cholesky,
  combine,
  countLeakedTensors,
  fromSpectrum,
  fromTensor,
  identity,
  inverse,
  isExactlySymmetric,
  matmul,
  matrix,
  orthogonalFrom,
  relativeError,
  spdMatrix,
  spectralCondition,
  toTensor,
  transpose,
} from '@mkor/testing';

import { dampedInverse, newtonSchulzInverse } from './damped-inverse';

/** Float32 unit roundoff. */
const U = 2 ** -24;

/**
 * Bound on `‖X − (A + λI)⁻¹‖_F / ‖(A + λI)⁻¹‖_F` for a float32 inverse of a d × d matrix with
 * 2-norm condition number κ: the standard first-order bound for inversion is `c·d·κ·u`
 * (Higham, Accuracy and Stability of Numerical Algorithms, ch. 14); rounding the output adds ≈ u.
 * We take c = 2. Measured: random log-spaced spectra (d ≤ 200, κ ≤ 1e6) stay below
 * 0.09·√d·κ·u (Schur) and 0.37·√d·κ·u (Newton–Schulz); the hardest case here, a damped rank-5
 * factor whose spectrum is mostly the damping, reaches 0.5·d·κ·u, 4× inside the bound.
 */
function inverseTolerance(d: number, condition: number): number {
  return 2 * U * (d * condition + 2);
}

/** The float64 reference `(A + λI)⁻¹` of the float32 values that the tensor actually holds. */
function referenceInverse(a: Matrix64, damping: number): Matrix64 {
  return inverse(combine(1, a, damping, identity(a.rows)));
}

/** A deterministic pseudo-random `Q diag(eigenvalues) Qᵀ` (eigenvalues given) of size d. */
function matrixWithSpectrum(eigenvalues: readonly number[], seed = 1): Matrix64 {
  const d = eigenvalues.length;
  let state = seed;
  const next = (): number => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 1073741824 - 1;
  };
  const q = orthogonalFrom(matrix(d, d, Array.from({ length: d * d }, next)));
  return fromSpectrum(q, eigenvalues);
}

/** Log-spaced eigenvalues from `largest` down to `largest / condition`. */
function logSpaced(d: number, largest: number, condition: number): number[] {
  return Array.from({ length: d }, (_, i) => largest * condition ** (-(d === 1 ? 0 : i / (d - 1))));
}

describe('dampedInverse (schur)', () => {
  it('matches the float64 inverse within 2u(d·κ + 2) on random SPD matrices, symmetric, leak-free', () => {
    fc.assert(
      fc.property(
        spdMatrix({ minDim: 1, maxDim: 160, maxCondition: 1e5 }),
        fc.constantFrom(0, 1e-3, 0.1),
        (a, damping) => {
          const t = toTensor(a);
          const held = fromTensor(t);
          const before = tf.memory().numTensors;
          const x = dampedInverse(t, damping);
          expect(tf.memory().numTensors - before).toBe(1);
          expect(t.isDisposed).toBe(false);
          const result = fromTensor(x);
          x.dispose();
          t.dispose();
          const dampedHeld = combine(1, held, damping, identity(held.rows));
          const error = relativeError(result, referenceInverse(held, damping));
          expect(error).toBeLessThanOrEqual(inverseTolerance(held.rows, spectralCondition(dampedHeld)));
          expect(isExactlySymmetric(result)).toBe(true);
        },
      ),
      { numRuns: 25 },
    );
  });

  it('inverts a 260 × 260 matrix (three levels of recursion, uneven halves) with κ = 1e4', () => {
    const a = matrixWithSpectrum(logSpaced(260, 10, 1e4));
    const t = toTensor(a);
    const held = fromTensor(t);
    const { result, leaked } = countLeakedTensors(() => {
      const x = dampedInverse(t);
      const values = fromTensor(x);
      x.dispose();
      return values;
    });
    t.dispose();
    expect(leaked).toBe(0);
    expect(relativeError(result, inverse(held))).toBeLessThanOrEqual(inverseTolerance(260, spectralCondition(held)));
    expect(isExactlySymmetric(result)).toBe(true);
  });

  it('adds the damping to a singular positive semi-definite factor, as KFAC does', () => {
    // A = B Bᵀ with B of rank 5: singular for d = 90; (A + λI)⁻¹ exists for λ > 0.
    const d = 90;
    const b = matrix(d, 5, Array.from({ length: d * 5 }, (_, i) => Math.sin(i * 0.7) + 0.1 * Math.cos(i)));
    const a = matmul(b, transpose(b));
    const t = toTensor(a);
    const held = fromTensor(t);
    const damping = 1e-2;
    const before = tf.memory().numTensors;
    const x = dampedInverse(t, damping);
    const result = fromTensor(x);
    x.dispose();
    expect(tf.memory().numTensors).toBe(before);
    const dampedHeld = combine(1, held, damping, identity(d));
    expect(relativeError(result, referenceInverse(held, damping))).toBeLessThanOrEqual(
      inverseTolerance(d, spectralCondition(dampedHeld)),
    );
    expect(() => dampedInverse(t)).toThrow(/dampedInverse: matrix \+ 0·I is not positive definite in float32/);
    expect(tf.memory().numTensors).toBe(before);
    t.dispose();
  });

  it('fails clearly, without leaking, when the matrix is not positive definite enough', () => {
    // `definiteInFloat64`: whether the float64 Cholesky of `@mkor/testing` accepts A + λI.
    const cases: { eigenvalues: number[]; damping: number; definiteInFloat64: boolean }[] = [
      // One negative eigenvalue, spread over every block by the random rotation.
      { eigenvalues: [...logSpaced(149, 1, 100), -0.5], damping: 0, definiteInFloat64: false },
      // Positive definite in float64 but κ = 1e9, beyond float32: refused on purpose.
      { eigenvalues: logSpaced(100, 1, 1e9), damping: 0, definiteInFloat64: true },
      // Damping that does not lift a negative eigenvalue.
      { eigenvalues: [...logSpaced(79, 2, 10), -1], damping: 0.5, definiteInFloat64: false },
    ];
    for (const { eigenvalues, damping, definiteInFloat64 } of cases) {
      const t = toTensor(matrixWithSpectrum(eigenvalues));
      const held = fromTensor(t);
      expect(cholesky(combine(1, held, damping, identity(held.rows))) !== null).toBe(definiteInFloat64);
      const before = tf.memory().numTensors;
      expect(() => dampedInverse(t, damping)).toThrow(
        /^dampedInverse: matrix \+ [\d.]+·I is not positive definite in float32: Cholesky pivot .* at row \d+/,
      );
      expect(tf.memory().numTensors).toBe(before);
      t.dispose();
    }
  });

  it('inverts 1 × 1 and diagonal matrices exactly', () => {
    const one = tf.tensor2d([[4]]);
    const x = dampedInverse(one, 1);
    expect(Array.from(x.dataSync())).toEqual([Math.fround(0.2)]);
    const diagonal = tf.tensor2d([
      [2, 0],
      [0, 8],
    ]);
    const y = dampedInverse(diagonal);
    expect(Array.from(y.dataSync())).toEqual([0.5, 0, 0, 0.125]);
    tf.dispose([one, x, diagonal, y]);
  });

  it('rejects bad input with messages that name the function', () => {
    const square = tf.eye(3) as tf.Tensor2D;
    const wide = tf.zeros([3, 2]) as tf.Tensor2D;
    const vector = tf.zeros([3]) as unknown as tf.Tensor2D;
    const empty = tf.zeros([0, 0]) as tf.Tensor2D;
    const withNaN = tf.tensor2d([
      [1, 0],
      [0, Number.NaN],
    ]);
    const withInf = tf.tensor2d([
      [Infinity, 0],
      [0, 1],
    ]);
    const asymmetric = tf.tensor2d([
      [1, 0.5],
      [0, 1],
    ]);
    const integers = tf.tensor2d([[2]], [1, 1], 'int32');
    const before = tf.memory().numTensors;
    const bad: [() => unknown, RegExp | string][] = [
      [() => dampedInverse(wide), 'dampedInverse: matrix must be square, got shape [3, 2]'],
      [() => dampedInverse(vector), /dampedInverse: matrix must have rank 2/],
      [() => dampedInverse([[1]] as unknown as tf.Tensor2D), /dampedInverse: matrix must be a tf.Tensor/],
      [() => dampedInverse(empty), 'dampedInverse: matrix must be at least 1 × 1'],
      [() => dampedInverse(integers), 'dampedInverse: matrix must be a float32 tensor, got dtype int32'],
      [() => dampedInverse(withNaN), 'dampedInverse: matrix contains NaN or Inf'],
      [() => dampedInverse(withInf), 'dampedInverse: matrix contains NaN or Inf'],
      [() => dampedInverse(asymmetric), /dampedInverse: matrix must be symmetric, got max\|A − Aᵀ\| = 0.5/],
      [() => dampedInverse(square, -1e-3), 'dampedInverse: damping must be [0, ∞), got -0.001'],
      [() => dampedInverse(square, Number.NaN), 'dampedInverse: damping must be [0, ∞), got NaN'],
      [
        () => dampedInverse(square, 0, { method: 'lu' as 'schur' }),
        "dampedInverse: method must be one of 'schur', 'newton-schulz', got lu",
      ],
      [
        () => dampedInverse(square, 0, { maxIterations: 3 }),
        "dampedInverse: initialGuess and maxIterations apply to method 'newton-schulz' only",
      ],
    ];
    for (const [call, message] of bad) expect(call).toThrow(message);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([square, wide, vector, empty, withNaN, withInf, asymmetric, integers]);
  });

  it('accepts the rounding-level asymmetry of a float32 product XᵀX', () => {
    const x = tf.randomNormal([50, 70], 0, 1, 'float32', 7);
    const a = tf.tidy(() => tf.matMul(tf.transpose(x), x) as tf.Tensor2D);
    const before = tf.memory().numTensors;
    const result = dampedInverse(a, 1);
    expect(tf.memory().numTensors - before).toBe(1);
    const reference = referenceInverse(fromTensor(a), 1);
    expect(relativeError(fromTensor(result), reference)).toBeLessThan(1e-4);
    tf.dispose([x, a, result]);
  });
});

describe('newtonSchulzInverse', () => {
  it('matches the float64 inverse within 2u(d·κ + 2) in about log₂(√d·κ) + 5 iterations, leak-free', () => {
    fc.assert(
      fc.property(spdMatrix({ minDim: 1, maxDim: 80, maxCondition: 1e4 }), fc.constantFrom(0, 1e-2), (a, damping) => {
        const t = toTensor(a);
        const held = fromTensor(t);
        const before = tf.memory().numTensors;
        const { inverse: x, iterations, residualNorm } = newtonSchulzInverse(t, damping);
        expect(tf.memory().numTensors - before).toBe(1);
        const result = fromTensor(x);
        tf.dispose([x, t]);
        const d = held.rows;
        const condition = spectralCondition(combine(1, held, damping, identity(d)));
        expect(relativeError(result, referenceInverse(held, damping))).toBeLessThanOrEqual(inverseTolerance(d, condition));
        expect(isExactlySymmetric(result)).toBe(true);
        expect(residualNorm).toBeLessThan(0.5);
        // X₀ = I/‖A‖_∞ with ‖A‖_∞ ≤ √d·λmax: the smallest eigenvalue of R₀ is ≥ 1/(√d·κ) away from 1.
        expect(iterations).toBeLessThanOrEqual(Math.ceil(Math.log2(Math.sqrt(d) * condition)) + 8);
      }),
      { numRuns: 20 },
    );
  });

  it('converges in a few iterations from a close warm start (a stale inverse)', () => {
    const d = 120;
    const stale = matrixWithSpectrum(logSpaced(d, 4, 1e3), 3);
    const drift = matrixWithSpectrum(logSpaced(d, 1e-3, 10), 5);
    const current = combine(1, stale, 1, drift);
    const staleTensor = toTensor(stale);
    const currentTensor = toTensor(current);
    const held = fromTensor(currentTensor);
    const damping = 1e-3;
    const guess = dampedInverse(staleTensor, damping);
    const before = tf.memory().numTensors;
    const cold = newtonSchulzInverse(currentTensor, damping);
    const warm = newtonSchulzInverse(currentTensor, damping, { initialGuess: guess });
    expect(tf.memory().numTensors - before).toBe(2);
    expect(warm.iterations).toBeLessThanOrEqual(5);
    expect(cold.iterations).toBeGreaterThan(warm.iterations + 5);
    const reference = referenceInverse(held, damping);
    const condition = spectralCondition(combine(1, held, damping, identity(d)));
    expect(relativeError(fromTensor(warm.inverse), reference)).toBeLessThanOrEqual(inverseTolerance(d, condition));
    expect(guess.isDisposed).toBe(false);
    tf.dispose([staleTensor, currentTensor, guess, cold.inverse, warm.inverse]);
  });

  it('is what dampedInverse runs for method newton-schulz', () => {
    const t = toTensor(matrixWithSpectrum(logSpaced(40, 1, 50)));
    const direct = newtonSchulzInverse(t, 0.1, { maxIterations: 30 });
    const viaDampedInverse = dampedInverse(t, 0.1, { method: 'newton-schulz', maxIterations: 30 });
    expect(Array.from(viaDampedInverse.dataSync())).toEqual(Array.from(direct.inverse.dataSync()));
    tf.dispose([t, direct.inverse, viaDampedInverse]);
  });

  it('fails clearly, without leaking, on matrices that are not positive definite and on bad starts', () => {
    const indefinite = toTensor(matrixWithSpectrum([...logSpaced(29, 1, 10), -0.2]));
    // Exactly singular in float32: a zero last row and column.
    const singular = tf.pad(toTensor(matrixWithSpectrum(logSpaced(29, 1, 10))), [
      [0, 1],
      [0, 1],
    ]) as tf.Tensor2D;
    const illConditioned = toTensor(matrixWithSpectrum(logSpaced(30, 1, 1e4)));
    const wrongSign = tf.neg(tf.eye(30)) as tf.Tensor2D;
    const zero = tf.zeros([3, 3]) as tf.Tensor2D;
    const before = tf.memory().numTensors;
    const notConverged = /^newtonSchulzInverse: Newton–Schulz (stopped making progress|diverged|did not converge)/;
    expect(() => newtonSchulzInverse(indefinite)).toThrow(notConverged);
    expect(() => newtonSchulzInverse(singular)).toThrow(notConverged);
    expect(() => newtonSchulzInverse(illConditioned, 0, { maxIterations: 3 })).toThrow(
      /newtonSchulzInverse: Newton–Schulz did not converge in 3 iterations/,
    );
    expect(() => newtonSchulzInverse(illConditioned, 0, { initialGuess: wrongSign })).toThrow(notConverged);
    expect(() => newtonSchulzInverse(zero)).toThrow(
      'newtonSchulzInverse: matrix + 0·I is not positive definite: its largest diagonal entry is 0',
    );
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([indefinite, singular, illConditioned, wrongSign, zero]);
  });

  it('rejects bad options with messages that name the function', () => {
    const square = tf.eye(3) as tf.Tensor2D;
    const small = tf.eye(2) as tf.Tensor2D;
    const withNaN = tf.tensor2d([
      [1, 0, 0],
      [0, Number.NaN, 0],
      [0, 0, 1],
    ]);
    const before = tf.memory().numTensors;
    expect(() => newtonSchulzInverse(square, 0, { maxIterations: 0 })).toThrow(
      'newtonSchulzInverse: maxIterations must be an integer in [1, ∞), got 0',
    );
    expect(() => newtonSchulzInverse(square, 0, { maxIterations: 2.5 })).toThrow(/maxIterations must be an integer/);
    expect(() => newtonSchulzInverse(square, 0, { initialGuess: small })).toThrow(
      'newtonSchulzInverse: initialGuess must have shape [3, 3], got [2, 2]',
    );
    expect(() => newtonSchulzInverse(square, 0, { initialGuess: withNaN })).toThrow(
      'newtonSchulzInverse: initialGuess contains NaN or Inf',
    );
    expect(() => newtonSchulzInverse(square, -1)).toThrow('newtonSchulzInverse: damping must be [0, ∞), got -1');
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([square, small, withNaN]);
  });
});
