import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { seeded, seededTensor } from '@mkor/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HeapGemm } from '@mkor/core';
import { jsHeapGemm } from './js-gemm';
import { registerWasmKernels, unregisterWasmKernels, wasmKernelsRegistered } from './register';

/** Float32 unit roundoff. */
const U = 2 ** -24;

const onWasm = tf.getBackend() === 'wasm';
if (!onWasm) console.log('wasm-kernels: kernel tests skipped on the cpu backend (they are wasm kernels)');

/** Live tensors and backend data entries: a kernel that leaks an intermediate shows in the second. */
function allocations(): [number, number] {
  return [tf.memory().numTensors, tf.engine().backend.numDataIds()];
}

/** Runs `fn` and checks it left no tensor and no backend data behind once its result is disposed. */
function expectNoLeak(fn: () => tf.Tensor | tf.Tensor[]): void {
  const before = allocations();
  tf.dispose(fn());
  expect(allocations()).toEqual(before);
}

/**
 * Asserts |actual − expected| ≤ bound entry by entry. Each bound is a float32 rounding envelope
 * built from the same data as the reference, so a wrong entry (an O(1) error) cannot pass.
 */
function expectWithin(actual: ArrayLike<number>, expected: ArrayLike<number>, bound: ArrayLike<number>): void {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < expected.length; i++) {
    const excess = Math.abs(actual[i]! - expected[i]!) - bound[i]!;
    if (excess > worst) [worst, at] = [excess, i];
  }
  expect(at === -1 ? 'within' : `entry ${at}: ${actual[at]} vs ${expected[at]} (bound ${bound[at]})`).toBe('within');
}

interface Product64 {
  value: Float64Array;
  /** Σ_l |a_il|·|b_lj| per entry: the scale of a k-term float32 dot product's rounding. */
  magnitude: Float64Array;
  shape: number[];
}

/** op(a)·op(b) in float64 with numpy-style batch broadcasting, written independently of the kernels. */
function product64(
  a: Float32Array,
  aShape: number[],
  b: Float32Array,
  bShape: number[],
  transposeA: boolean,
  transposeB: boolean,
): Product64 {
  const [ar, br] = [aShape.length, bShape.length];
  const m = transposeA ? aShape[ar - 1]! : aShape[ar - 2]!;
  const k = transposeA ? aShape[ar - 2]! : aShape[ar - 1]!;
  const n = transposeB ? bShape[br - 2]! : bShape[br - 1]!;
  const rank = Math.max(ar, br) - 2;
  const pad = (s: number[]) => [...new Array<number>(rank - (s.length - 2)).fill(1), ...s.slice(0, -2)];
  const [aBatch, bBatch] = [pad(aShape), pad(bShape)];
  const outBatch = aBatch.map((d, i) => Math.max(d, bBatch[i]!));
  const count = outBatch.reduce((x, y) => x * y, 1);
  const value = new Float64Array(count * m * n);
  const magnitude = new Float64Array(count * m * n);
  for (let p = 0; p < count; p++) {
    let [rest, ai, bi] = [p, 0, 0];
    const coords = outBatch.map(() => 0);
    for (let d = rank - 1; d >= 0; d--) {
      coords[d] = rest % outBatch[d]!;
      rest = Math.floor(rest / outBatch[d]!);
    }
    for (let d = 0; d < rank; d++) {
      ai = ai * aBatch[d]! + (aBatch[d] === 1 ? 0 : coords[d]!);
      bi = bi * bBatch[d]! + (bBatch[d] === 1 ? 0 : coords[d]!);
    }
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let [sum, abs] = [0, 0];
        for (let l = 0; l < k; l++) {
          const x = a[ai * m * k + (transposeA ? l * m + i : i * k + l)]!;
          const y = b[bi * k * n + (transposeB ? j * k + l : l * n + j)]!;
          sum += x * y;
          abs += Math.abs(x * y);
        }
        value[(p * m + i) * n + j] = sum;
        magnitude[(p * m + i) * n + j] = abs;
      }
    }
  }
  return { value, magnitude, shape: [...outBatch, m, n] };
}

/** The envelope of a float32 dot product of k terms: (k + 2)·u·Σ|a||b| (Higham, ch. 3). */
function dotBound(magnitude: Float64Array, k: number): Float64Array {
  return magnitude.map((s) => (k + 2) * U * s + 1e-30);
}

const productCases: { a: number[]; b: number[] }[] = [
  { a: [5, 7], b: [7, 3] },
  { a: [1, 9], b: [9, 1] },
  { a: [3, 4, 6], b: [3, 6, 5] },
  { a: [2, 3, 4, 6], b: [6, 5] },
  { a: [4, 6], b: [2, 6, 5] },
  { a: [1, 4, 6], b: [3, 6, 2] },
  { a: [2, 1, 4, 6], b: [1, 3, 6, 5] },
  { a: [64, 33], b: [33, 17] },
];

/** Shapes of the stored operands for op = transpose: the last two dimensions swapped. */
function stored(shape: number[], transpose: boolean): number[] {
  return transpose ? [...shape.slice(0, -2), shape[shape.length - 1]!, shape[shape.length - 2]!] : shape;
}

/** A gemm that counts its calls, so a test knows the provider was used. */
function countingGemm(): { gemm: HeapGemm; calls: () => number } {
  let calls = 0;
  return {
    gemm: (heap, call) => {
      calls++;
      jsHeapGemm(heap, call);
    },
    calls: () => calls,
  };
}

const providers = [
  { name: 'tfjs plain product', gemm: null as ReturnType<typeof countingGemm> | null },
  { name: 'JS HeapGemm provider', gemm: countingGemm() },
];

describe.skipIf(!onWasm)('wasm kernels', () => {
  afterAll(() => unregisterWasmKernels());

  for (const provider of providers) {
    describe(`with the ${provider.name}`, () => {
      beforeAll(() => registerWasmKernels({ gemm: provider.gemm?.gemm ?? null }));

      it('BatchMatMul equals a float64 product for every transpose, batch dims and broadcast', () => {
        const callsBefore = provider.gemm?.calls() ?? 0;
        let seed = 1;
        for (const { a: aLogical, b: bLogical } of productCases) {
          for (const transposeA of [false, true]) {
            for (const transposeB of [false, true]) {
              const aShape = stored(aLogical, transposeA);
              const bShape = stored(bLogical, transposeB);
              const [a, b] = [seededTensor(aShape, seed++), seededTensor(bShape, seed++)];
              const reference = product64(a.dataSync() as Float32Array, aShape, b.dataSync() as Float32Array, bShape, transposeA, transposeB);
              expectNoLeak(() => {
                const c = tf.matMul(a, b, transposeA, transposeB);
                expect(c.shape).toEqual(reference.shape);
                expectWithin(c.dataSync(), reference.value, dotBound(reference.magnitude, aLogical[aLogical.length - 1]!));
                return c;
              });
              tf.dispose([a, b]);
            }
          }
        }
        if (provider.gemm !== null) expect(provider.gemm.calls()).toBeGreaterThan(callsBefore);
      });

      it('_FusedMatMul adds the bias and applies each activation as tfjs defines them (one and two matrices)', () => {
        const activations = ['linear', 'relu', 'relu6', 'elu', 'leakyrelu', 'prelu', 'sigmoid'] as const;
        const f64: Record<(typeof activations)[number], (x: number, alpha: number) => number> = {
          linear: (x) => x,
          relu: (x) => Math.max(x, 0),
          relu6: (x) => Math.min(Math.max(x, 0), 6),
          elu: (x) => (x >= 0 ? x : Math.expm1(x)),
          leakyrelu: (x, alpha) => (x >= 0 ? x : alpha * x),
          prelu: (x, alpha) => (x >= 0 ? x : alpha * x),
          sigmoid: (x) => 1 / (1 + Math.exp(-x)),
        };
        let seed = 100;
        for (const activation of activations) {
          for (const [transposeA, transposeB, batch] of [[false, false, 1], [true, false, 2], [false, true, 1], [true, true, 2]] as const) {
            const [m, k, n] = [6, 9, 5];
            const a = tf.mul(seededTensor(stored([batch, m, k], transposeA), seed++), 3);
            const b = seededTensor(stored([batch, k, n], transposeB), seed++);
            const bias = seededTensor([n], seed++);
            const alphas = tf.tensor1d(seeded(n, seed++).map((v) => 0.5 * v + 0.5));
            const reference = product64(a.dataSync() as Float32Array, a.shape, b.dataSync() as Float32Array, b.shape, transposeA, transposeB);
            const [biasValues, alphaValues] = [bias.dataSync(), alphas.dataSync()];
            const expected = reference.value.map((v, i) => f64[activation](v + biasValues[i % n]!, activation === 'prelu' ? alphaValues[i % n]! : 0.2));
            // The activations' slopes are at most 1, so the product's envelope carries over; the
            // bias addition and the activation's own rounding add a few u of the output.
            const bound = dotBound(reference.magnitude, k).map((e, i) => e + 4 * U * (Math.abs(expected[i]!) + Math.abs(biasValues[i % n]!)));
            expectNoLeak(() => {
              const c = tf.fused.matMul({
                a: a as tf.Tensor3D,
                b: b as tf.Tensor3D,
                transposeA,
                transposeB,
                bias,
                activation,
                preluActivationWeights: activation === 'prelu' ? alphas : undefined,
                leakyreluAlpha: 0.2,
              });
              expectWithin(c.dataSync(), expected, bound);
              return c;
            });
            tf.dispose([a, b, bias, alphas]);
          }
        }
      });

      it('a reshaped second operand is multiplied with its new layout (tfjs-backend-wasm 4.22 reused the old one)', () => {
        const p = seededTensor([6, 4], 7);
        const [x, y] = [seededTensor([3, 6], 8), seededTensor([3, 8], 9)];
        expectNoLeak(() => {
          const first = tf.matMul(x, p);
          const reshaped = tf.reshape(p, [8, 3]);
          const second = tf.matMul(y, reshaped);
          reshaped.dispose();
          const reference = product64(y.dataSync() as Float32Array, [3, 8], p.dataSync() as Float32Array, [8, 3], false, false);
          expectWithin(second.dataSync(), reference.value, dotBound(reference.magnitude, 8));
          return [first, second];
        });
        tf.dispose([p, x, y]);
      });

      const convCases: {
        x: [number, number, number, number];
        filter: [number, number, number, number];
        strides: number | [number, number];
        pad: 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];
      }[] = [
        { x: [2, 9, 9, 1], filter: [3, 3, 1, 4], strides: 2, pad: 'same' },
        { x: [2, 9, 9, 1], filter: [3, 3, 1, 4], strides: 2, pad: 'valid' },
        { x: [1, 8, 7, 3], filter: [3, 2, 3, 5], strides: [2, 1], pad: 'same' },
        { x: [3, 6, 6, 2], filter: [1, 1, 2, 3], strides: 1, pad: 'valid' },
        { x: [1, 7, 8, 2], filter: [3, 3, 2, 2], strides: 1, pad: 1 },
        { x: [2, 6, 5, 2], filter: [2, 3, 2, 3], strides: [1, 2], pad: [[0, 0], [1, 2], [0, 1], [0, 0]] },
        { x: [2, 10, 10, 4], filter: [5, 5, 4, 6], strides: 3, pad: 'same' },
      ];

      it("Conv2DBackpropFilter and Conv2DBackpropInput equal the cpu backend's kernels (strides, padding)", async () => {
        let seed = 300;
        for (const { x: xShape, filter: fShape, strides, pad } of convCases) {
          const x = seeded(xShape.reduce((p, s) => p * s, 1), seed++);
          const filter = seeded(fShape.reduce((p, s) => p * s, 1), seed++);
          const outShape = tf.tidy(() => tf.conv2d(tf.tensor4d(x, xShape), tf.tensor4d(filter, fShape), strides, pad).shape);
          const dy = seeded(outShape.reduce((p, s) => p * s, 1), seed++);
          const common = { strides, pad, dataFormat: 'NHWC' };
          const run = (xs: Float32Array, fs: Float32Array, dys: Float32Array) => {
            const [xt, ft, dyt] = [tf.tensor4d(xs, xShape), tf.tensor4d(fs, fShape), tf.tensor4d(dys, outShape)];
            const dw = tf.engine().runKernel('Conv2DBackpropFilter', { x: xt, dy: dyt }, { ...common, filterShape: fShape }) as tf.Tensor;
            const dx = tf.engine().runKernel('Conv2DBackpropInput', { dy: dyt, filter: ft }, { ...common, inputShape: xShape }) as tf.Tensor;
            const values = [dw.dataSync().slice(), dx.dataSync().slice()] as const;
            expect([dw.shape, dx.shape]).toEqual([fShape, xShape]);
            tf.dispose([xt, ft, dyt, dw, dx]);
            return values;
          };
          const abs = (v: Float32Array) => v.map(Math.abs);
          await tf.setBackend('cpu');
          const [dwCpu, dxCpu] = run(x, filter, dy);
          const [dwScale, dxScale] = run(abs(x), abs(filter), abs(dy));
          await tf.setBackend('wasm');
          const before = allocations();
          const [dwWasm, dxWasm] = run(x, filter, dy);
          expect(allocations()).toEqual(before);
          // Both backends round a sum of K terms: each within (K + 2)·u·Σ|terms| of the exact value.
          const dwTerms = outShape[0]! * outShape[1]! * outShape[2]!;
          const dxTerms = fShape[0] * fShape[1] * fShape[3];
          expectWithin(dwWasm, dwCpu, dwScale.map((s) => 2 * (dwTerms + 2) * U * s));
          expectWithin(dxWasm, dxCpu, dxScale.map((s) => 2 * (dxTerms + 2) * U * s));
        }
      });
    });
  }

  it("gradients of a Dense and a Conv2D tfjs-layers model equal the cpu backend's", async () => {
    registerWasmKernels();
    const models = {
      dense: () =>
        tfl.sequential({
          layers: [
            tfl.layers.dense({ inputShape: [20], units: 16, activation: 'relu' }),
            tfl.layers.dense({ units: 5, activation: 'softmax' }),
          ],
        }),
      conv: () =>
        tfl.sequential({
          layers: [
            tfl.layers.conv2d({ inputShape: [12, 12, 2], filters: 4, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu' }),
            tfl.layers.conv2d({ filters: 3, kernelSize: 3, strides: 1, padding: 'valid', activation: 'relu', useBias: true }),
            tfl.layers.maxPooling2d({ poolSize: 2 }),
            tfl.layers.flatten(),
            tfl.layers.dense({ units: 5, activation: 'softmax' }),
          ],
        }),
    };
    const inputShapes = { dense: [8, 20], conv: [8, 12, 12, 2] };
    for (const kind of ['dense', 'conv'] as const) {
      const inputs = seeded(inputShapes[kind].reduce((p, s) => p * s, 1), 11);
      const labels = Float32Array.from({ length: 8 * 5 }, (_, i) => (i % 5 === Math.floor(i / 5) % 5 ? 1 : 0));
      let weights: Float32Array[] = [];
      const gradients = async (backend: 'cpu' | 'wasm') => {
        await tf.setBackend(backend);
        const model = models[kind]();
        if (weights.length === 0) weights = model.getWeights().map((w, i) => seeded(w.size, 50 + i));
        model.setWeights(model.getWeights().map((w, i) => tf.tensor(weights[i]!, w.shape)));
        const [x, y] = [tf.tensor(inputs, inputShapes[kind]), tf.tensor2d(labels, [8, 5])];
        const before = allocations();
        const { value, grads } = tf.variableGrads(() =>
          tf.losses.softmaxCrossEntropy(y, model.apply(x) as tf.Tensor) as tf.Scalar,
        );
        const result = model.trainableWeights.map((w) => grads[w.originalName]!.dataSync().slice());
        tf.dispose([value, ...Object.values(grads)]);
        expect(allocations()).toEqual(before);
        tf.dispose([x, y]);
        model.dispose();
        return result;
      };
      const cpu = await gradients('cpu');
      const wasm = await gradients('wasm');
      expect(wasm.length).toBe(cpu.length);
      // The backends sum products (≤ 100 terms here) in different orders; through two or three
      // layers that is a few hundred u of each gradient's largest entry.
      for (let i = 0; i < cpu.length; i++) {
        const scale = Math.max(...cpu[i]!.map(Math.abs));
        expectWithin(wasm[i]!, cpu[i]!, cpu[i]!.map(() => 2000 * U * scale));
        expect(scale).toBeGreaterThan(0);
      }
    }
  });

  it('unregisterWasmKernels restores tfjs-backend-wasm: no Conv2DBackpropFilter, its own BatchMatMul', () => {
    unregisterWasmKernels();
    const shipped = tf.getKernel('BatchMatMul', 'wasm');
    registerWasmKernels();
    expect(wasmKernelsRegistered()).toBe(true);
    expect(tf.getKernel('BatchMatMul', 'wasm')).not.toBe(shipped);
    registerWasmKernels({ gemm: jsHeapGemm });
    unregisterWasmKernels();
    expect(wasmKernelsRegistered()).toBe(false);
    expect(tf.getKernel('BatchMatMul', 'wasm')).toBe(shipped);
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeUndefined();
  });
});

describe('registerWasmKernels', () => {
  it('refuses a gemm that is not a function, naming the parameter', () => {
    expect(() => registerWasmKernels({ gemm: 5 as unknown as HeapGemm })).toThrow(/registerWasmKernels: options\.gemm must be a function/);
    expect(wasmKernelsRegistered()).toBe(false);
  });
});
