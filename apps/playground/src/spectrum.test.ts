import { fromSpectrum, matrix, orthogonalFrom } from '@mkor/testing';
import { describe, expect, it } from 'vitest';

import { inverseFactorSpectrum, symmetricEigenvalues } from './spectrum';

/** A d×d matrix of reproducible pseudo-random entries in (−1, 1) (a linear congruential sequence). */
function pseudoRandom(rows: number, cols: number, seed: number): Float64Array {
  let state = seed;
  return Float64Array.from({ length: rows * cols }, () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return (2 * state) / 2147483648 - 1;
  });
}

/** max |a_i − b_i| / max |b_i|. */
function relativeDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let difference = 0;
  let largest = 0;
  for (let i = 0; i < b.length; i++) {
    difference = Math.max(difference, Math.abs((a[i] as number) - (b[i] as number)));
    largest = Math.max(largest, Math.abs(b[i] as number));
  }
  return difference / largest;
}

describe('symmetricEigenvalues', () => {
  it('recovers the eigenvalues of Q·diag(λ)·Qᵀ, spread over eight decades and of both signs, in descending order', () => {
    const d = 40;
    const eigenvalues = Float64Array.from({ length: d }, (_, i) => (i % 7 === 3 ? -1 : 1) * 10 ** (4 - (8 * i) / (d - 1)));
    const q = orthogonalFrom(matrix(d, d, pseudoRandom(d, d, 7)));
    const computed = symmetricEigenvalues(fromSpectrum(q, eigenvalues).data, d);
    const expected = Float64Array.from(eigenvalues).sort().reverse();
    expect(relativeDifference(computed, expected)).toBeLessThan(1e-12);
    // The small ones too, each to its own size (the matrix's norm is 1e4; float64 keeps 1e-4 to ~1e-12 relative).
    for (let i = 0; i < d; i++) expect(Math.abs((computed[i] as number) - (expected[i] as number)), `eigenvalue ${i}`).toBeLessThan(1e-9);
  });

  it('returns the diagonal of a diagonal matrix and nothing for size 0', () => {
    expect(Array.from(symmetricEigenvalues([3, 0, 0, 0, -1, 0, 0, 0, 2], 3))).toEqual([3, 2, -1]);
    expect(symmetricEigenvalues([], 0)).toHaveLength(0);
  });

  it('refuses values of the wrong length, a bad size and non-finite entries', () => {
    expect(() => symmetricEigenvalues([1, 2, 3], 2)).toThrow(/symmetricEigenvalues: values holds 3 numbers, not size² = 4/);
    expect(() => symmetricEigenvalues([], -1)).toThrow(/size must be a non-negative integer, got -1/);
    expect(() => symmetricEigenvalues([1, Number.NaN, Number.NaN, 1], 2)).toThrow(/NaN or ±Inf/);
  });
});

describe('inverseFactorSpectrum', () => {
  it('of c·I + U·diag(m)·Uᵀ with orthogonal columns of norms s: c + m_j·s_j² and c for the rest', () => {
    const d = 30;
    const rank = 4;
    const q = orthogonalFrom(matrix(d, d, pseudoRandom(d, d, 3)));
    const norms = [2, 0.5, 1, 3];
    const weights = [0.7, -0.9, 0.1, -0.05];
    const basis = new Float64Array(d * rank);
    for (let i = 0; i < d; i++) for (let j = 0; j < rank; j++) basis[i * rank + j] = (q.data[i * d + j] as number) * (norms[j] as number);
    const scale = 1.25;
    const expected = Float64Array.from({ length: d }, (_, i) => (i < rank ? scale + (weights[i] as number) * (norms[i] as number) ** 2 : scale)).sort().reverse();
    const computed = inverseFactorSpectrum({ kind: 'low-rank', size: d, rank, scale, basis, weights });
    expect(relativeDifference(computed, expected)).toBeLessThan(1e-12);
  });

  it('equals the dense spectrum of the same matrix with unused (zero) and repeated columns in the window', () => {
    const d = 25;
    const rank = 6;
    const basis = pseudoRandom(d, rank, 11);
    for (let i = 0; i < d; i++) {
      basis[i * rank + 4] = 0; // an unused slot of the window
      basis[i * rank + 5] = 2 * (basis[i * rank + 1] as number); // a term along an earlier one
    }
    const weights = [0.3, -0.2, 0.5, -0.1, 0, 0.05];
    const scale = 0.8;
    const dense = new Float64Array(d * d);
    for (let i = 0; i < d; i++) {
      for (let j = 0; j < d; j++) {
        let sum = i === j ? scale : 0;
        for (let k = 0; k < rank; k++) sum += (basis[i * rank + k] as number) * (weights[k] as number) * (basis[j * rank + k] as number);
        dense[i * d + j] = sum;
      }
    }
    const computed = inverseFactorSpectrum({ kind: 'low-rank', size: d, rank, scale, basis, weights });
    expect(computed).toHaveLength(d);
    expect(relativeDifference(computed, inverseFactorSpectrum({ kind: 'dense', size: d, values: dense }))).toBeLessThan(1e-12);
  });

  it('refuses a basis or weights of the wrong size, naming them', () => {
    expect(() => inverseFactorSpectrum({ kind: 'low-rank', size: 3, rank: 2, scale: 1, basis: [1, 2, 3], weights: [1, 1] })).toThrow(/basis holds 3 numbers, not size × rank = 6/);
    expect(() => inverseFactorSpectrum({ kind: 'low-rank', size: 3, rank: 1, scale: 1, basis: [1, 2, 3], weights: [1, 1] })).toThrow(/weights holds 2 numbers, not rank = 1/);
  });
});
