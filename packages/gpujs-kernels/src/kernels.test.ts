/**
 * The gpu.js kernels against float64 references in plain TypeScript (@mkor/testing), in every
 * mode this environment offers: in Node cpu, webasm and — when the optional `gl` package built and
 * an X display exists (the package's test script runs under `xvfb-run` where installed) —
 * headless-gl; in Chromium (test/browser/gpujs.test.ts) WebGL 2 and cpu.
 *
 * Tolerances. Every mode computes in float32 (gpu.js `precision: 'single'`, highp shaders; the cpu
 * and webasm modes round each stored entry to float32), so the bounds are float32 rounding bounds
 * with a factor 2 for GPU arithmetic that may fuse or reorder operations, not hand-tuned numbers:
 * - the refresh, `(d + 4)·u·M·(2 + A)` on the largest entry, with M the size of the update's two
 *   terms and A the amplification of the rounding of `u = S·v` and `vᵀu` (`updateTermSize64`,
 *   `updateAmplification64`), plus u·λ for the blend after;
 * - preconditioning, entrywise `(n + m + 2r + 6)·u·(|R⁻¹|·|G|·|L⁻¹|)ᵢⱼ`: the classic bound of a
 *   product of three matrices, with inner lengths n and m (r for low-rank factors), absolute
 *   values of the factors (low-rank: `|c|·I + |U|·|diag(m)|·|U|ᵀ`).
 */
import {
  type InverseUpdateForm,
  type Matrix64,
  FLOAT32_UNIT_ROUNDOFF,
  blendTowardIdentity64,
  combine,
  fromSpectrum,
  identity,
  matmul,
  matrix,
  orthogonalFrom,
  seeded,
  seededStream,
  updateAmplification64,
  updateInverseFactor64,
  updateTermSize64,
} from '@mkor/testing';
import { GPU } from 'gpu.js';
import { afterAll, describe, expect, it } from 'vitest';

import { type KernelMode, type MkorKernels, createMkorKernels } from './kernels';
import type { Float32Matrix, InverseFactor, LowRankFactor } from './matrix';

const inBrowser = 'document' in globalThis;
const headlessGl = !inBrowser && GPU.isHeadlessGLSupported;
if (!inBrowser && !headlessGl) {
  console.warn(
    'gpujs-kernels: headless-gl is not available (the optional package gl did not build, or there is no X display: run under xvfb-run); its tests are skipped. See the package README.',
  );
}

/** The modes tested here, and whether each can run. */
const MODES: readonly { mode: KernelMode; available: boolean }[] = inBrowser
  ? [
      // WebGL 1 in Chromium (ANGLE over SwiftShader) fails to compile the fragment shaders of the
      // preconditioning kernels (found 2026-12-03, not yet fixed); headless-gl, also WebGL 1, compiles them.
      { mode: 'webgl2', available: true },
      { mode: 'cpu', available: true },
    ]
  : [
      { mode: 'cpu', available: true },
      { mode: 'webasm', available: true },
      { mode: 'headlessgl', available: headlessGl },
    ];

const FORMS: readonly InverseUpdateForm[] = ['exact', 'paper', 'reference'];
const u = FLOAT32_UNIT_ROUNDOFF;

/** A float32 matrix holding `m` rounded to float32, and the float64 matrix of exactly those values. */
function toFloat32(m: Matrix64): { matrix: Float32Matrix; exact: Matrix64 } {
  const data = Float32Array.from(m.data);
  return { matrix: { rows: m.rows, columns: m.cols, data }, exact: matrix(m.rows, m.cols, data) };
}

/** A seeded symmetric positive-definite matrix with eigenvalues from `largest` down to `largest / condition`. */
function spd(d: number, seed: number, largest: number, condition: number): Matrix64 {
  const q = orthogonalFrom(matrix(d, d, seeded(d * d, seed)));
  const eigenvalues = Array.from({ length: d }, (_, i) => largest * condition ** (-(d === 1 ? 0 : i / (d - 1))));
  return fromSpectrum(q, eigenvalues);
}

/** `(1−λ)·P + λ·I` in float64. */
function blendAfter64(p: Matrix64, lambda: number): Matrix64 {
  return combine(1 - lambda, p, lambda, identity(p.rows));
}

/** The largest |a − b| over all entries. */
function largestDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let largest = 0;
  for (let i = 0; i < a.length; i++) largest = Math.max(largest, Math.abs((a[i] as number) - (b[i] as number)));
  return largest;
}

/** Whether `data` (`[d, d]`) equals its transpose bit for bit. */
function exactlySymmetric(data: Float32Array, d: number): boolean {
  for (let i = 0; i < d; i++) for (let j = 0; j < i; j++) if (!Object.is(data[i * d + j], data[j * d + i])) return false;
  return true;
}

/** A low-rank factor `c·I + U·diag(m)·Uᵀ` of size d and rank r from seeded data. */
function lowRank(d: number, r: number, seed: number): LowRankFactor {
  return {
    scale: Math.fround(0.5 + seededStream(seed)() * 0.25),
    basis: { rows: d, columns: r, data: seeded(d * r, seed + 1) },
    weights: seeded(r, seed + 2).map((w) => -0.1 + 0.05 * w),
  };
}

/** A factor as a float64 dense matrix, and its entrywise-absolute counterpart for the error bound. */
function dense64(factor: InverseFactor): { value: Matrix64; absolute: Matrix64 } {
  if (!('basis' in factor)) {
    const value = matrix(factor.rows, factor.columns, factor.data);
    return { value, absolute: matrix(factor.rows, factor.columns, value.data.map(Math.abs)) };
  }
  const { rows: d, columns: r, data } = factor.basis;
  const value = matrix(d, d);
  const absolute = matrix(d, d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) {
      let sum = i === j ? factor.scale : 0;
      let sumAbsolute = i === j ? Math.abs(factor.scale) : 0;
      for (let k = 0; k < r; k++) {
        const term = (data[i * r + k] as number) * (factor.weights[k] as number) * (data[j * r + k] as number);
        sum += term;
        sumAbsolute += Math.abs(term);
      }
      value.data[i * d + j] = sum;
      absolute.data[i * d + j] = sumAbsolute;
    }
  }
  return { value, absolute };
}

for (const { mode, available } of MODES) {
  describe.skipIf(!available)(`gpu.js kernels, mode ${mode}`, () => {
    let kernels: MkorKernels | undefined;
    const get = (): MkorKernels => (kernels ??= createMkorKernels({ mode }));
    afterAll(() => kernels?.destroy());

    it('runs in the mode asked for', () => {
      expect(get().mode).toBe(mode);
    });

    describe('refreshInverse against the float64 update (blend, form, blend)', () => {
      const cases = FORMS.flatMap((form) =>
        [1, 2, 5, 33].flatMap((d) =>
          [
            { zeta: 1, lambda: 0 },
            { zeta: 0.3, lambda: 0.1 },
          ].map((blends) => ({ form, d, ...blends })),
        ),
      );
      it.each(cases)('$form, d = $d, ζ = $zeta, λ = $lambda', ({ form, d, zeta, lambda }) => {
        const gamma = form === 'paper' ? 0.9 : 0.7;
        const inverse = toFloat32(spd(d, 11 * d + 3, 2, 50));
        const v = seeded(d, 5 * d + 1).map((x) => 3 * x);
        const before = Float32Array.from(inverse.matrix.data);
        const result = get().refreshInverse(inverse.matrix, v, { form, gamma, stabilizerZeta: zeta, identityBlend: lambda });
        const start = blendTowardIdentity64(inverse.exact, zeta);
        const expected = blendAfter64(updateInverseFactor64(start, v, form, gamma), lambda);
        const termSize = (1 - lambda) * updateTermSize64(start, v, form, gamma) + lambda;
        const allowance = (d + 4) * u * termSize * (2 + updateAmplification64(start, v, form, gamma));
        expect(result.rows).toBe(d);
        expect(result.columns).toBe(d);
        expect(largestDifference(result.data, expected.data)).toBeLessThanOrEqual(allowance);
        expect(exactlySymmetric(result.data, d)).toBe(true);
        expect(inverse.matrix.data).toEqual(before);
      });
    });

    it.each([
      { label: 'zero', scale: 0 },
      { label: 'tiny', scale: 1e-20 },
      { label: 'huge', scale: 1e20 },
    ])('refreshes with a $label v (scaled by a power of two first)', ({ scale }) => {
      const d = 6;
      const inverse = toFloat32(spd(d, 7, 1, 10));
      const v = seeded(d, 9).map((x) => scale * x);
      for (const form of FORMS) {
        const result = get().refreshInverse(inverse.matrix, v, { form, gamma: 0.8 });
        const expected = updateInverseFactor64(inverse.exact, v, form, 0.8);
        const termSize = updateTermSize64(inverse.exact, v, form, 0.8);
        const allowance = (d + 4) * u * termSize * (2 + updateAmplification64(inverse.exact, v, form, 0.8));
        expect(largestDifference(result.data, expected.data), form).toBeLessThanOrEqual(allowance);
      }
    });

    it('refreshes a 1100 × 1100 factor (outputs beyond one texture row, exact index split)', () => {
      const d = 1100;
      const next = seededStream(1100);
      // Symmetric and diagonally dominant, hence positive definite; no O(d³) spectrum needed.
      const p = matrix(d, d);
      for (let i = 0; i < d; i++) {
        for (let j = 0; j <= i; j++) {
          const value = i === j ? 1 : next() / d;
          p.data[i * d + j] = value;
          p.data[j * d + i] = value;
        }
      }
      const inverse = toFloat32(p);
      const v = seeded(d, 1101);
      const result = get().refreshInverse(inverse.matrix, v, { form: 'exact', gamma: 0.95 });
      const expected = updateInverseFactor64(inverse.exact, v, 'exact', 0.95);
      // M ≤ ‖P‖∞/γ + α‖u‖²/(γ(γ + α·vᵀu)) ≤ 2/γ + 1/γ: the 2-norm bound through the ∞-norm (P is within 1 ± 1 of I).
      expect(largestDifference(result.data, expected.data)).toBeLessThanOrEqual((d + 4) * u * (3 / 0.95) * 2);
      expect(exactlySymmetric(result.data, d)).toBe(true);
    });

    describe('precondition against the float64 product R⁻¹·G·L⁻¹', () => {
      const shapes = [
        { n: 1, m: 1, r: 1 },
        { n: 7, m: 3, r: 2 },
        { n: 33, m: 65, r: 4 },
      ];
      const kinds = ['dense', 'low-rank'] as const;
      const cases = shapes.flatMap((shape) => kinds.flatMap((input) => kinds.map((output) => ({ ...shape, input, output }))));
      it.each(cases)('$input × $output, G $n × $m, rank $r', ({ n, m, r, input, output }) => {
        const inputInverse: InverseFactor = input === 'dense' ? toFloat32(spd(n, 3 * n, 1.5, 20)).matrix : lowRank(n, r, 17 * n);
        const outputInverse: InverseFactor = output === 'dense' ? toFloat32(spd(m, 5 * m, 1.5, 20)).matrix : lowRank(m, r, 19 * m);
        const gradient: Float32Matrix = { rows: n, columns: m, data: seeded(n * m, 23 * n + m) };
        const left = dense64(inputInverse);
        const right = dense64(outputInverse);
        const g = matrix(n, m, gradient.data);
        const expected = matmul(matmul(left.value, g), right.value);
        const magnitude = matmul(matmul(left.absolute, matrix(n, m, g.data.map(Math.abs))), right.absolute);
        const result = get().precondition(inputInverse, gradient, outputInverse);
        expect([result.rows, result.columns]).toEqual([n, m]);
        const k = n + m + 2 * r + 6;
        const worst = Math.max(...Array.from(result.data, (value, i) => Math.abs(value - (expected.data[i] as number)) / (k * u * (magnitude.data[i] as number))));
        expect(worst).toBeLessThanOrEqual(1);
      });
    });

    it('builds each kernel once per size', () => {
      const kernels = get();
      const d = 9;
      const inverse = toFloat32(spd(d, 1, 1, 4)).matrix;
      const gradient = { rows: d, columns: 4, data: seeded(d * 4, 2) };
      const right = toFloat32(spd(4, 3, 1, 4)).matrix;
      kernels.refreshInverse(inverse, seeded(d, 4));
      kernels.precondition(inverse, gradient, right);
      const built = kernels.builtKernels;
      for (let i = 0; i < 3; i++) {
        kernels.refreshInverse(inverse, seeded(d, 5 + i));
        kernels.precondition(inverse, gradient, right);
      }
      expect(kernels.builtKernels).toBe(built);
      kernels.refreshInverse(toFloat32(spd(d + 1, 1, 1, 4)).matrix, seeded(d + 1, 4));
      expect(kernels.builtKernels).toBe(built + 2);
    });

    describe('refuses bad input, naming the function and the parameter', () => {
      const d = 3;
      const inverse = (): Float32Matrix => toFloat32(spd(d, 1, 1, 4)).matrix;
      const gradient = (): Float32Matrix => ({ rows: d, columns: 2, data: seeded(d * 2, 3) });
      const right = (): Float32Matrix => toFloat32(spd(2, 2, 1, 4)).matrix;
      it.each([
        { label: 'a non-square inverse', call: (k: MkorKernels) => k.refreshInverse(gradient(), seeded(d, 1)), error: /refreshInverse: inverse must be square/ },
        { label: 'v of the wrong length', call: (k: MkorKernels) => k.refreshInverse(inverse(), seeded(d + 1, 1)), error: /refreshInverse: v must hold 3 entries, got 4/ },
        { label: 'v as a plain array', call: (k: MkorKernels) => k.refreshInverse(inverse(), [1, 2, 3] as unknown as Float32Array), error: /refreshInverse: v must be a Float32Array, got Array/ },
        { label: 'data of the wrong length', call: (k: MkorKernels) => k.refreshInverse({ rows: 3, columns: 3, data: new Float32Array(8) }, seeded(d, 1)), error: /refreshInverse: inverse.data must hold 9 entries/ },
        { label: 'γ = 1', call: (k: MkorKernels) => k.refreshInverse(inverse(), seeded(d, 1), { gamma: 1 }), error: /refreshInverse: gamma must be a number in \(0, 1\), got 1/ },
        { label: 'ζ = 2', call: (k: MkorKernels) => k.refreshInverse(inverse(), seeded(d, 1), { stabilizerZeta: 2 }), error: /refreshInverse: stabilizerZeta must be a number in \[0, 1\]/ },
        { label: 'λ = NaN', call: (k: MkorKernels) => k.refreshInverse(inverse(), seeded(d, 1), { identityBlend: Number.NaN }), error: /refreshInverse: identityBlend must be a number in \[0, 1\], got NaN/ },
        { label: 'an unknown form', call: (k: MkorKernels) => k.refreshInverse(inverse(), seeded(d, 1), { form: 'cubic' as 'exact' }), error: /refreshInverse: form must be one of exact, paper, reference, got cubic/ },
        { label: 'NaN in P', call: (k: MkorKernels) => k.refreshInverse({ ...inverse(), data: inverse().data.map((x, i) => (i === 4 ? Number.NaN : x)) }, seeded(d, 1)), error: /refreshInverse: inverse holds NaN at entry 4/ },
        { label: 'Infinity in v', call: (k: MkorKernels) => k.refreshInverse(inverse(), new Float32Array([1, Number.POSITIVE_INFINITY, 0])), error: /refreshInverse: v holds Infinity at entry 1/ },
        {
          label: 'a result beyond float32',
          call: (k: MkorKernels) => k.refreshInverse({ rows: 1, columns: 1, data: new Float32Array([3e38]) }, new Float32Array([0]), { gamma: 0.5 }),
          error: /refreshInverse: the result \(beyond float32\) holds Infinity at entry 0/,
        },
        { label: 'a gradient of the wrong size', call: (k: MkorKernels) => k.precondition(inverse(), { rows: 2, columns: 2, data: new Float32Array(4) }, right()), error: /precondition: inputInverse must be 2 × 2, got 3 × 3/ },
        {
          label: 'a low-rank factor with mismatched weights',
          call: (k: MkorKernels) => k.precondition(inverse(), gradient(), { scale: 1, basis: { rows: 2, columns: 2, data: new Float32Array(4) }, weights: new Float32Array(3) }),
          error: /precondition: outputInverse.weights must hold 2 entries, got 3/,
        },
        { label: 'NaN in the gradient', call: (k: MkorKernels) => k.precondition(inverse(), { ...gradient(), data: new Float32Array([0, 0, Number.NaN, 0, 0, 0]) }, right()), error: /precondition: gradient holds NaN at entry 2/ },
        {
          label: 'Infinity in a low-rank scale',
          call: (k: MkorKernels) => k.precondition(inverse(), gradient(), { scale: Number.NEGATIVE_INFINITY, basis: { rows: 2, columns: 1, data: new Float32Array(2) }, weights: new Float32Array(1) }),
          error: /precondition: outputInverse.scale holds -Infinity at entry 0/,
        },
      ])('$label', ({ call, error }) => {
        expect(() => call(get())).toThrow(error);
      });

      it('computes without the finite checks when asked, and says what it returns', () => {
        const result = get().refreshInverse({ rows: 1, columns: 1, data: new Float32Array([3e38]) }, new Float32Array([0]), { gamma: 0.5, checkFinite: false });
        expect(result.data[0]).toBe(Number.POSITIVE_INFINITY);
      });
    });
  });
}

describe('createMkorKernels', () => {
  it('refuses an unknown mode', () => {
    expect(() => createMkorKernels({ mode: 'cuda' as KernelMode })).toThrow(/createMkorKernels: mode must be one of gpu, webgl2, webgl, headlessgl, webasm, cpu, got cuda/);
  });

  it.skipIf(inBrowser || headlessGl)('says how to get headless-gl when it is missing', () => {
    expect(() => createMkorKernels({ mode: 'headlessgl' })).toThrow(/createMkorKernels: gpu.js mode 'headlessgl' is not available here \(headless-gl needs the optional package gl, built, and an X display: run under xvfb-run\)/);
  });
});
