/**
 * fast-check arbitraries for the numerical property tests: symmetric positive-definite
 * matrices with a chosen range of condition numbers, and vectors of any scale (zero, tiny, huge).
 */
import fc from 'fast-check';

import { type Matrix64, fromSpectrum, matrix, orthogonalFrom } from './float64';

/** Options for {@link spdMatrix}. */
export interface SpdOptions {
  readonly minDim?: number;
  readonly maxDim?: number;
  /** Largest condition number λmax/λmin drawn (log-uniform from 1). */
  readonly maxCondition?: number;
  /** Range of log10 of the largest eigenvalue. */
  readonly log10Scale?: readonly [number, number];
}

/**
 * A uniformly distributed number in [min, max]. (`fc.double` draws uniformly over float64 bit
 * patterns, so most of its draws are tiny: a median near 1e-163 on [0, 6]. Matrices built from
 * it come out numerically diagonal.)
 */
export function uniform(min: number, max: number): fc.Arbitrary<number> {
  const steps = 2 ** 30;
  return fc.integer({ min: 0, max: steps }).map((k) => min + ((max - min) * k) / steps);
}

const unit = uniform(-1, 1);

/** A random symmetric positive-definite float64 matrix, `Q diag(λ) Qᵀ`, λ log-spaced. */
export function spdMatrix(options: SpdOptions = {}): fc.Arbitrary<Matrix64> {
  const { minDim = 1, maxDim = 12, maxCondition = 1e6, log10Scale = [-1, 1] } = options;
  return fc
    .integer({ min: minDim, max: maxDim })
    .chain((d) =>
      fc.record({
        d: fc.constant(d),
        seed: fc.array(unit, { minLength: d * d, maxLength: d * d }),
        log10Condition: uniform(0, Math.log10(maxCondition)),
        log10Top: uniform(log10Scale[0], log10Scale[1]),
        fractions: fc.array(uniform(0, 1), { minLength: d, maxLength: d }),
      }),
    )
    .map(({ d, seed, log10Condition, log10Top, fractions }) => {
      const q = orthogonalFrom(matrix(d, d, seed));
      // Largest eigenvalue 10^top, smallest 10^(top − log10Condition), the rest in between.
      const eigenvalues = fractions.map((f, i) => {
        const position = d === 1 ? 0 : i === 0 ? 0 : i === d - 1 ? 1 : f;
        return 10 ** (log10Top - position * log10Condition);
      });
      return fromSpectrum(q, eigenvalues);
    });
}

/**
 * A vector of length `d` at any scale: the zero vector, or random entries times 10^k for
 * k in [minLog10, maxLog10] (tiny to huge).
 */
export function scaledVector(d: number, minLog10 = -8, maxLog10 = 4): fc.Arbitrary<Float64Array> {
  return fc.oneof(
    { weight: 1, arbitrary: fc.constant(new Float64Array(d)) },
    {
      weight: 6,
      arbitrary: fc
        .tuple(
          fc.array(unit, { minLength: d, maxLength: d }),
          uniform(minLog10, maxLog10),
        )
        .map(([entries, k]) => Float64Array.from(entries, (x) => x * 10 ** k)),
    },
  );
}
