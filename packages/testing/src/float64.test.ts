import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { spdMatrix } from './arbitraries';
import { cholesky, identity, inverse, matmul, matrix, relativeError, transpose } from './float64';

describe('float64 reference', () => {
  it('Cholesky reproduces an SPD matrix and its inverse is exact', () => {
    fc.assert(
      fc.property(spdMatrix({ maxDim: 8, maxCondition: 1e4 }), (a) => {
        const l = cholesky(a);
        expect(l).not.toBeNull();
        expect(relativeError(matmul(l!, transpose(l!)), a)).toBeLessThan(1e-10);
        expect(relativeError(matmul(a, inverse(a)), identity(a.rows))).toBeLessThan(1e-8);
      }),
    );
  });

  it('Cholesky refuses an indefinite matrix', () => {
    expect(cholesky(matrix(2, 2, [1, 2, 2, 1]))).toBeNull();
    expect(cholesky(matrix(1, 1, [Number.NaN]))).toBeNull();
  });
});
