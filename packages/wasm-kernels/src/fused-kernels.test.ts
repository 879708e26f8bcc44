import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { finiteFlag, hasFusedKernel, runFusedKernel, skipNonFinite } from '@mkor/core';
import { scaleByAdam } from '@mkor/first-order';
import { frobeniusNorm, rescaleToNorm } from '@mkor/grad-rescale';
import { shermanMorrison, updateInverseFactor } from '@mkor/sherman-morrison';
import {
  type Matrix64,
  blendTowardIdentity64,
  fromTensor,
  infNorm,
  isExactlySymmetric,
  isPositiveDefinite,
  maxAbs,
  scaledVector,
  seeded,
  seededTensor,
  spdMatrix,
  toTensor,
  updateEnvelopeRatio64,
  updateInverseFactor64,
  updateRoundingAllowance64,
  updateTermSize64,
} from '@mkor/testing';
import fc from 'fast-check';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { fusedKernelsSupported } from './fused-kernels';
import { registerWasmKernels, unregisterWasmKernels } from './register';

const onWasm = tf.getBackend() === 'wasm';
if (!onWasm) console.log('wasm-kernels: fused kernel tests skipped on the cpu backend (they are wasm kernels)');

/** Live tensors and backend data entries. */
function allocations(): [number, number] {
  return [tf.memory().numTensors, tf.engine().backend.numDataIds()];
}

/** Runs `fn` with the fused kernels registered (`fused`) or not, checking that it leaks nothing. */
function run<T>(fused: boolean, fn: () => T): T {
  registerWasmKernels({ fused });
  expect(hasFusedKernel('finiteFlag')).toBe(fused);
  const before = allocations();
  const result = fn();
  expect(allocations()).toEqual(before);
  return result;
}

/** The values of `make()`'s tensors, which are disposed. */
function values(make: () => tf.Tensor | tf.Tensor[]): Float32Array[] {
  const made = make();
  const list = Array.isArray(made) ? made : [made];
  const out = list.map((t) => t.dataSync() as Float32Array);
  tf.dispose(list);
  return out;
}

/** Both runs' values, bit for bit (NaN payloads aside: compared as numbers, NaN equal to NaN). */
function expectSameBits(fused: Float32Array[], plain: Float32Array[]): void {
  expect(fused.length).toBe(plain.length);
  fused.forEach((f, i) => expect(Array.from(f)).toEqual(Array.from(plain[i]!)));
}

/** `fn()` in `tf.tidy`, keeping what it returns (a transform's result), as adapters run it. */
function inTidy<T>(fn: () => T): T {
  return tf.tidy(fn as () => tf.TensorContainer) as T;
}

/** A bool scalar's value (disposed). */
function isTrue(flag: tf.Scalar): boolean {
  const value = flag.dataSync()[0];
  flag.dispose();
  return value === 1;
}

/** Sizes that exercise the 4-wide body, the tail, and both. */
const SIZES = [1, 3, 4, 5, 17, 1027];

describe('the compiled module', () => {
  it('src/fused-binary.ts is what scripts/compile-wat.mjs makes from src/fused.wat', () => {
    const script = fileURLToPath(new URL('../scripts/compile-wat.mjs', import.meta.url));
    expect(execFileSync(process.execPath, [script, '--check'], { encoding: 'utf8' })).toContain('matches');
  });

  it('validates in this engine (WebAssembly SIMD)', () => {
    expect(fusedKernelsSupported()).toBe(true);
  });
});

describe.skipIf(!onWasm)('fused kernels against the same computation from tfjs kernels', () => {
  beforeAll(() => registerWasmKernels());
  afterAll(() => unregisterWasmKernels());

  it('finiteFlag: finds NaN, +Inf and −Inf at every position of body and tail, and overflowing sums', () => {
    for (const fused of [true, false]) {
      run(fused, () => {
        for (const n of SIZES) {
          const clean = seeded(n, n);
          const flag = (tensors: tf.Tensor[], sums: [tf.Tensor, tf.Tensor][] = []) => isTrue(finiteFlag(tensors, sums));
          const good = tf.tensor(clean);
          expect(flag([good])).toBe(true);
          for (const bad of [NaN, Infinity, -Infinity]) {
            for (const at of new Set([0, n - 1, Math.floor(n / 2)])) {
              const data = clean.slice();
              data[at] = bad;
              const poisoned = tf.tensor(data);
              expect(flag([good, poisoned]), `${bad} at ${at} of ${n} (fused ${fused})`).toBe(false);
              tf.dispose(poisoned);
            }
          }
          const huge = tf.fill([n], 3e38);
          expect(flag([huge])).toBe(true);
          // 3e38 + 3e38 overflows float32; 3e38 + (−3e38) does not.
          expect(flag([], [[huge, huge]])).toBe(false);
          const negated = tf.neg(huge);
          expect(flag([good], [[huge, negated]])).toBe(true);
          tf.dispose([good, huge, negated]);
        }
        // Other dtypes are always finite; nothing at all is finite too.
        const counts = tf.tensor([1, 2, 3], [3], 'int32');
        expect(isTrue(finiteFlag([counts]))).toBe(true);
        expect(isTrue(finiteFlag([]))).toBe(true);
        counts.dispose();
      });
    }
  });

  it('frobeniusNorm: the float64 norm rounded once, for tiny, huge, zero and non-finite entries', () => {
    for (const n of SIZES) {
      for (const magnitude of [1, 1e-25, 1e20]) {
        const data = seeded(n, 7 * n).map((x) => x * magnitude);
        const exact = Math.sqrt(data.reduce((s, x) => s + x * x, 0));
        const x = tf.tensor(data);
        const fused = run(true, () => values(() => frobeniusNorm(x)))[0]![0]!;
        const plain = run(false, () => values(() => frobeniusNorm(x)))[0]![0]!;
        expect(fused).toBe(Math.fround(exact));
        expect(Math.abs(plain - exact)).toBeLessThanOrEqual(exact * 1e-5);
        x.dispose();
      }
    }
    const zeros = tf.zeros([5]);
    const poisoned = tf.tensor([1, NaN, 2]);
    expect(run(true, () => values(() => [frobeniusNorm(zeros), frobeniusNorm(poisoned)])).map((v) => v[0])).toEqual([0, NaN]);
    tf.dispose([zeros, poisoned]);
  });

  it('rescaleToNorm: the rescaled update, and each fallback (zero update, NaN update, NaN gradient)', () => {
    const gradient = seededTensor([33, 7], 3);
    const update = tf.tidy(() => tf.mul(seededTensor([33, 7], 4), 1e-3));
    const cases: [string, tf.Tensor, tf.Tensor][] = [
      ['rescaled', update, gradient],
      ['zero update → gradient', tf.zerosLike(gradient), gradient],
      ['NaN update → gradient', tf.fill([33, 7], NaN), gradient],
      ['NaN gradient → zeros', update, tf.fill([33, 7], NaN)],
    ];
    for (const [name, u, g] of cases) {
      const [fused] = run(true, () => values(() => rescaleToNorm(u, g)));
      const [plain] = run(false, () => values(() => rescaleToNorm(u, g)));
      // The factor differs in its last bits (float64 against float32 sums of squares).
      fused!.forEach((f, i) => expect(Math.abs(f - plain![i]!), `${name}, entry ${i}`).toBeLessThanOrEqual(Math.abs(plain![i]!) * 1e-6));
    }
    const [rescaled] = run(true, () => values(() => rescaleToNorm(update, gradient)));
    const norm = (a: ArrayLike<number>) => Math.sqrt(Array.from(a).reduce((s, x) => s + x * x, 0));
    expect(norm(rescaled!) / norm(gradient.dataSync())).toBeCloseTo(1, 6);
    tf.dispose(cases.flatMap(([, u, g]) => [u, g]));
  });

  it('scaleByAdam: moments and directions equal bit for bit over three steps, tails included', () => {
    const shapes = { w: [37, 5], b: [3], s: [1] };
    const runAdam = (fused: boolean) =>
      run(fused, () => {
        const transform = scaleByAdam({ beta1: 0.9, beta2: 0.999, epsilon: 1e-8 });
        const params = Object.fromEntries(Object.entries(shapes).map(([k, s], i) => [k, seededTensor(s, i + 1)]));
        let state = transform.init(params);
        const out: Float32Array[] = [];
        for (let step = 0; step < 3; step++) {
          const grads = Object.fromEntries(Object.entries(shapes).map(([k, s], i) => [k, seededTensor(s, 10 * step + i + 5)]));
          const result = inTidy(() => transform.update(grads, state));
          out.push(...Object.values(result.updates).map((t) => t.dataSync() as Float32Array));
          out.push(...Object.values(result.state.firstMoment).map((t) => t.dataSync() as Float32Array));
          out.push(...Object.values(result.state.secondMoment).map((t) => t.dataSync() as Float32Array));
          tf.dispose([...Object.values(grads), ...Object.values(result.updates)]);
          tf.dispose([...Object.values(state.firstMoment), ...Object.values(state.secondMoment)]);
          state = result.state;
        }
        tf.dispose([...Object.values(params), ...Object.values(state.firstMoment), ...Object.values(state.secondMoment)]);
        return out;
      });
    expectSameBits(runAdam(true), runAdam(false));
  });

  it('the Sherman–Morrison step (shermanMorrison; updateInverseFactor exact and paper): equal bit for bit, exactly symmetric', () => {
    for (const d of [1, 5, 64, 130]) {
      const a = seededTensor([d, d], d);
      const inverse = tf.tidy(() => tf.add(tf.eye(d), tf.div(tf.matMul(a, a, false, true), d * 4)) as tf.Tensor2D);
      const v = tf.mul(seededTensor([d], d + 1), 3) as tf.Tensor1D;
      const compute = () => [
        shermanMorrison(inverse, v, { beta: 0.9, alpha: 0.1 }),
        updateInverseFactor(inverse, v, { form: 'exact', gamma: 0.9 }),
        updateInverseFactor(inverse, v, { form: 'paper', gamma: 0.9 }),
      ];
      const fused = run(true, () => values(compute));
      expectSameBits(fused, run(false, () => values(compute)));
      for (const m of fused) {
        for (let i = 0; i < d; i++) for (let j = 0; j < i; j++) expect(m[i * d + j]).toBe(m[j * d + i]);
      }
      tf.dispose([a, inverse, v]);
    }
  });

  it('skipNonFinite with Adam: refuses a step whose second moment overflows, takes a normal one, leaving state as it was', () => {
    for (const fused of [true, false]) {
      run(fused, () => {
        const guarded = skipNonFinite(scaleByAdam());
        const params = { w: seededTensor([9, 3], 1) };
        const state = guarded.init(params);
        const huge = { w: tf.fill([9, 3], 1e20) };
        const refused = inTidy(() => guarded.update(huge, state, { params }));
        expect(refused.state.refusedResults).toBe(1);
        expect(refused.state.inner).toBe(state.inner);
        const normal = { w: seededTensor([9, 3], 2) };
        const taken = inTidy(() => guarded.update(normal, refused.state, { params }));
        expect(taken.state.lastSkipped).toBe(false);
        tf.dispose([params.w, huge.w, normal.w, ...Object.values(refused.updates), ...Object.values(taken.updates)]);
        tf.dispose([...Object.values(state.inner.firstMoment), ...Object.values(state.inner.secondMoment)]);
        tf.dispose([...Object.values(taken.state.inner.firstMoment), ...Object.values(taken.state.inner.secondMoment)]);
      });
    }
  });
});

/** The fused dense refresh's attributes for a stabiliser `{ epsilon, zeta, norm }` (or none) and a form. */
interface RefreshCase {
  readonly stabilizer: { epsilon: number; zeta: number; norm: 'inf' | 'max' } | false;
  readonly form: 'exact' | 'paper';
  readonly gamma: number;
}

function denseRefresh(inverse: tf.Tensor2D, v: tf.Tensor1D, { stabilizer, form, gamma }: RefreshCase): { result: Matrix64; fired: boolean; finite: boolean } {
  const [result, fired, finite] = runFusedKernel<[tf.Tensor2D, tf.Scalar, tf.Scalar]>('denseRefresh', { inverse, v }, {
    stabilize: stabilizer === false ? 0 : 1,
    epsilon: stabilizer === false ? 0 : stabilizer.epsilon,
    zeta: stabilizer === false ? 0 : stabilizer.zeta,
    norm: stabilizer === false || stabilizer.norm === 'inf' ? 0 : 1,
    form: form === 'paper' ? 1 : 0,
    gamma,
  });
  const read = { result: fromTensor(result), fired: isTrue(fired), finite: isTrue(finite) };
  result.dispose();
  return read;
}

/** The same refresh in float64: the stabiliser's decision and blend, then the update; I when not finite. */
function denseRefresh64(inverse: Matrix64, v: ArrayLike<number>, { stabilizer, form, gamma }: RefreshCase): { result: Matrix64; fired: boolean; start: Matrix64 } {
  const norm = stabilizer === false ? 0 : stabilizer.norm === 'inf' ? infNorm(inverse) : maxAbs(inverse);
  const fired = stabilizer !== false && norm > stabilizer.epsilon;
  const start = fired ? blendTowardIdentity64(inverse, (stabilizer as { zeta: number }).zeta) : inverse;
  return { result: updateInverseFactor64(start, v, form, gamma), fired, start };
}

describe.skipIf(!onWasm)('the fused dense refresh of an MKOR factor', () => {
  beforeAll(() => registerWasmKernels());
  afterAll(() => unregisterWasmKernels());

  const cases: RefreshCase[] = [
    { stabilizer: false, form: 'exact', gamma: 0.9 },
    { stabilizer: false, form: 'paper', gamma: 0.9 },
    { stabilizer: { epsilon: 100, zeta: 0.1, norm: 'inf' }, form: 'exact', gamma: 0.9 },
    { stabilizer: { epsilon: 0.5, zeta: 0.1, norm: 'inf' }, form: 'exact', gamma: 0.9 },
    { stabilizer: { epsilon: 0.5, zeta: 0.3, norm: 'max' }, form: 'paper', gamma: 0.7 },
  ];

  it('equals the float64 stabiliser + update for both forms, fired or not, sizes 1 to 130 and v from 1e-20 to 1e20', () => {
    const before = allocations();
    let firedSeen = 0;
    for (const d of [1, 5, 64, 130]) {
      const a = seededTensor([d, d], d);
      const inverse = tf.tidy(() => tf.add(tf.eye(d), tf.div(tf.matMul(a, a, false, true), d * 4)) as tf.Tensor2D);
      const inverse64 = fromTensor(inverse);
      for (const magnitude of [1e-20, 1, 1e20]) {
        const v = tf.tidy(() => tf.mul(seededTensor([d], d + 1), magnitude) as tf.Tensor1D);
        const v64 = v.dataSync();
        for (const refreshCase of cases) {
          const fused = denseRefresh(inverse, v, refreshCase);
          const reference = denseRefresh64(inverse64, v64, refreshCase);
          expect(fused.fired, JSON.stringify(refreshCase)).toBe(reference.fired);
          expect(fused.finite).toBe(true);
          expect(isExactlySymmetric(fused.result)).toBe(true);
          // Within the rounding allowance of the update's two terms (twice it: u is rounded too).
          const allowance = 2 * updateRoundingAllowance64(d, updateTermSize64(reference.start, v64, refreshCase.form, refreshCase.gamma));
          const worst = fused.result.data.reduce((m, x, i) => Math.max(m, Math.abs(x - reference.result.data[i]!)), 0);
          expect(worst, `d ${d}, |v| ${magnitude}, ${JSON.stringify(refreshCase)}`).toBeLessThanOrEqual(allowance);
          if (fused.fired) firedSeen++;
        }
        v.dispose();
      }
      tf.dispose([a, inverse]);
    }
    expect(firedSeen).toBeGreaterThan(0);
    expect(allocations()).toEqual(before);
  });

  it('returns the identity and finite = false for a NaN in v or an Inf in the factor', () => {
    const before = allocations();
    const inverse = tf.eye(3) as tf.Tensor2D;
    const poisonedV = tf.tensor1d([1, NaN, 2]);
    const goodV = tf.tensor1d([1, 2, 3]);
    const poisonedInverse = tf.tensor2d([1, 0, Infinity, 0, 1, 0, Infinity, 0, 1], [3, 3]);
    for (const [p, v] of [[inverse, poisonedV], [poisonedInverse, goodV]] as const) {
      const { result, finite } = denseRefresh(p, v, cases[2]!);
      expect(finite).toBe(false);
      expect(Array.from(result.data)).toEqual([1, 0, 0, 0, 1, 0, 0, 0, 1]);
    }
    tf.dispose([inverse, poisonedV, goodV, poisonedInverse]);
    expect(allocations()).toEqual(before);
  });

  it('Lemma 3.1: exactly symmetric and finite always, positive definite whenever ρ ≥ 1 (fast-check)', () => {
    for (const form of ['exact', 'paper'] as const) {
      let inside = 0;
      let runs = 0;
      fc.assert(
        fc.property(
          spdMatrix({ maxDim: 16, maxCondition: 1e6 }).chain((inverse) =>
            fc.record({ inverse: fc.constant(inverse), v: scaledVector(inverse.rows, -8, 4), gamma: fc.double({ min: 1e-3, max: 1 - 1e-3, noNaN: true }) }),
          ),
          ({ inverse: inverse64, v: vector, gamma }) => {
            const inverse = toTensor(inverse64);
            const v = tf.tensor1d(Float32Array.from(vector));
            const rounded = fromTensor(inverse);
            const v32 = v.dataSync();
            const { result, finite } = denseRefresh(inverse, v, { stabilizer: false, form, gamma });
            tf.dispose([inverse, v]);
            fc.pre(isPositiveDefinite(rounded));
            runs++;
            expect(finite).toBe(true);
            expect(isExactlySymmetric(result)).toBe(true);
            if (updateEnvelopeRatio64(rounded, v32, form, gamma) >= 1) {
              inside++;
              expect(isPositiveDefinite(result)).toBe(true);
            }
          },
        ),
        { numRuns: 150 },
      );
      expect(inside).toBeGreaterThan(runs / 2);
    }
  });
});
