/**
 * The fused kernels of `@mkor/core`'s `FUSED_KERNELS` contract for the wasm backend: small SIMD
 * loops (fused.wat) instantiated on tfjs-backend-wasm's own memory, so they read and write tensors
 * where they lie, in one pass each.
 */
import { FUSED_KERNELS } from '@mkor/core';
import type { KernelConfig, KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';

import { FUSED_MODULE_SHARED, FUSED_MODULE_UNSHARED } from './fused-binary';
import { byteOffsetOf, type WasmBackendInternals } from './wasm-backend';

/** The functions of fused.wat (pointers are byte offsets, counts are float32 entries). */
interface FusedExports {
  nonFinite(x: number, n: number): number;
  nonFiniteSum(a: number, b: number, n: number): number;
  sumOfSquares(x: number, n: number): number;
  scale(out: number, x: number, n: number, factor: number): void;
  adam(
    g: number, m: number, v: number, mOut: number, vOut: number, uOut: number, n: number,
    beta1: number, oneMinusBeta1: number, beta2: number, oneMinusBeta2: number,
    correction1: number, correction2: number, epsilon: number,
  ): void;
  rankOneUpdate(out: number, p: number, u: number, d: number, scale: number, coefficient: number, divisor: number): void;
  matrixVectorAndRowNorms(p: number, w: number, d: number, product: number, absSum: number, maxAbs: number): void;
  blendedRankOneUpdate(out: number, p: number, u: number, d: number, keep: number, add: number, s: number, c: number, divisor: number): number;
}

function decode(base64: string): Uint8Array {
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

/** Whether this JavaScript engine runs the fused kernels (WebAssembly 128-bit SIMD). */
export function fusedKernelsSupported(): boolean {
  return typeof WebAssembly === 'object' && WebAssembly.validate(decode(FUSED_MODULE_UNSHARED));
}

/** One instance per memory: tfjs-backend-wasm has one memory for the life of the page/process. */
const instances = new WeakMap<WebAssembly.Memory, FusedExports>();

/**
 * The backend's memory, as the fused kernels see it: read `.buffer` afresh after any allocation
 * (growth replaces it; the threaded build's `HEAPU8` is only refreshed lazily, so it is not used).
 */
function memoryOf(backend: WasmBackendInternals): WebAssembly.Memory {
  // The unthreaded builds export their memory (asm.memory); the threaded build creates a shared
  // one and imports it (wasmMemory).
  const memory = backend.wasm.asm?.memory ?? backend.wasm.wasmMemory;
  if (!(memory instanceof WebAssembly.Memory)) {
    throw new Error(
      'wasm-kernels: this tfjs-backend-wasm exposes neither wasm.asm.memory nor wasm.wasmMemory, which the fused kernels run on; ' +
        'register without them: registerWasmKernels({ fused: false })',
    );
  }
  return memory;
}

function fusedExports(backend: WasmBackendInternals): FusedExports {
  const memory = memoryOf(backend);
  let found = instances.get(memory);
  if (found === undefined) {
    const shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
    // Under 4 KB, so a synchronous compile is allowed on a browser's main thread too.
    const module = new WebAssembly.Module(decode(shared ? FUSED_MODULE_SHARED : FUSED_MODULE_UNSHARED));
    found = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as FusedExports;
    instances.set(memory, found);
  }
  return found;
}

interface KernelArgs {
  inputs: NamedTensorInfoMap;
  backend: unknown;
  attrs?: NamedAttrMap;
}

function sizeOf(t: TensorInfo): number {
  return t.shape.reduce((a, b) => a * b, 1);
}

function checkFloat32(where: string, tensors: readonly TensorInfo[]): void {
  for (const t of tensors) {
    if (t.dtype !== 'float32') throw new Error(`${where}: only float32 tensors are supported, got ${t.dtype}`);
  }
}

function checkSameSize(where: string, tensors: readonly TensorInfo[]): number {
  const n = sizeOf(tensors[0]!);
  for (const t of tensors) {
    if (sizeOf(t) !== n) throw new Error(`${where}: inputs must have one size, got [${tensors.map((x) => x.shape.join('×')).join(', ')}]`);
  }
  return n;
}

/** The inputs `x0 … x(n−1)` in order. */
function numberedInputs(inputs: NamedTensorInfoMap): TensorInfo[] {
  const list: TensorInfo[] = [];
  for (let i = 0; inputs[`x${i}`] !== undefined; i++) list.push(inputs[`x${i}`]!);
  return list;
}

/** A float32 scalar read straight from the heap (the wasm backend computes synchronously: no stall). */
function scalarOf(backend: WasmBackendInternals, t: TensorInfo): number {
  return new Float32Array(memoryOf(backend).buffer, byteOffsetOf(backend, t), 1)[0]!;
}

function writeScalar(backend: WasmBackendInternals, value: number, dtype: 'float32' | 'bool'): TensorInfo {
  const out = backend.makeOutput([], dtype);
  const at = byteOffsetOf(backend, out);
  if (dtype === 'bool') new Uint8Array(memoryOf(backend).buffer, at, 1)[0] = value;
  else new Float32Array(memoryOf(backend).buffer, at, 1)[0] = value;
  return out;
}

const finiteFlag: KernelFunc = ({ inputs, backend, attrs }: KernelArgs) => {
  const where = FUSED_KERNELS.finiteFlag;
  const wasm = backend as WasmBackendInternals;
  const fused = fusedExports(wasm);
  const all = numberedInputs(inputs);
  const pairCount = (attrs?.['sums'] as number | undefined) ?? 0;
  const singles = all.slice(0, all.length - 2 * pairCount);
  checkFloat32(where, all);
  let nonFinite = 0;
  for (const t of singles) nonFinite |= fused.nonFinite(byteOffsetOf(wasm, t), sizeOf(t));
  for (let i = singles.length; i < all.length; i += 2) {
    const a = all[i]!;
    const b = all[i + 1]!;
    const n = checkSameSize(where, [a, b]);
    nonFinite |= fused.nonFiniteSum(byteOffsetOf(wasm, a), byteOffsetOf(wasm, b), n);
  }
  return writeScalar(wasm, nonFinite === 0 ? 1 : 0, 'bool');
};

/** `‖x‖₂` rounded once to float32 from a float64 sum of squares. */
function norm(fused: FusedExports, wasm: WasmBackendInternals, t: TensorInfo): number {
  return Math.fround(Math.sqrt(fused.sumOfSquares(byteOffsetOf(wasm, t), sizeOf(t))));
}

const euclideanNorms: KernelFunc = ({ inputs, backend }: KernelArgs) => {
  const wasm = backend as WasmBackendInternals;
  const fused = fusedExports(wasm);
  const all = numberedInputs(inputs);
  checkFloat32(FUSED_KERNELS.euclideanNorms, all);
  const norms = all.map((t) => norm(fused, wasm, t));
  const out = wasm.makeOutput([norms.length], 'float32');
  new Float32Array(memoryOf(wasm).buffer, byteOffsetOf(wasm, out), norms.length).set(norms);
  return out;
};

const rescaleToNorm: KernelFunc = ({ inputs, backend }: KernelArgs) => {
  const where = FUSED_KERNELS.rescaleToNorm;
  const wasm = backend as WasmBackendInternals;
  const fused = fusedExports(wasm);
  const { update, gradient } = inputs as { update: TensorInfo; gradient: TensorInfo };
  checkFloat32(where, [update, gradient]);
  const n = checkSameSize(where, [update, gradient]);
  const gradientNorm = norm(fused, wasm, gradient);
  const factor = Math.fround(gradientNorm / norm(fused, wasm, update));
  const rescaled = wasm.makeOutput(gradient.shape, 'float32');
  const at = byteOffsetOf(wasm, rescaled);
  if (Number.isFinite(factor) && factor > 0) fused.scale(at, byteOffsetOf(wasm, update), n, factor);
  else if (Number.isFinite(gradientNorm)) fused.scale(at, byteOffsetOf(wasm, gradient), n, 1);
  else new Uint8Array(memoryOf(wasm).buffer, at, 4 * n).fill(0);
  return [rescaled, writeScalar(wasm, factor, 'float32')];
};

const adam: KernelFunc = ({ inputs, backend, attrs }: KernelArgs) => {
  const where = FUSED_KERNELS.adam;
  const wasm = backend as WasmBackendInternals;
  const fused = fusedExports(wasm);
  const { gradient, firstMoment, secondMoment } = inputs as Record<'gradient' | 'firstMoment' | 'secondMoment', TensorInfo>;
  checkFloat32(where, [gradient, firstMoment, secondMoment]);
  const n = checkSameSize(where, [gradient, firstMoment, secondMoment]);
  const { beta1, beta2, epsilon, correction1, correction2 } = attrs as Record<'beta1' | 'beta2' | 'epsilon' | 'correction1' | 'correction2', number>;
  const outputs = [0, 1, 2].map(() => wasm.makeOutput(gradient.shape, 'float32'));
  const [m, v, u] = outputs.map((t) => byteOffsetOf(wasm, t)) as [number, number, number];
  // Each constant as tfjs would make it: the JavaScript number rounded to a float32 scalar.
  const f = Math.fround;
  fused.adam(
    byteOffsetOf(wasm, gradient), byteOffsetOf(wasm, firstMoment), byteOffsetOf(wasm, secondMoment), m, v, u, n,
    f(beta1), f(1 - beta1), f(beta2), f(1 - beta2), f(correction1), f(correction2), f(epsilon),
  );
  return outputs;
};

const rankOneUpdate: KernelFunc = ({ inputs, backend, attrs }: KernelArgs) => {
  const where = FUSED_KERNELS.rankOneUpdate;
  const wasm = backend as WasmBackendInternals;
  const fused = fusedExports(wasm);
  const { matrix, u, coefficient } = inputs as Record<'matrix' | 'u' | 'coefficient', TensorInfo>;
  checkFloat32(where, [matrix, u, coefficient]);
  const d = sizeOf(u);
  if (matrix.shape.length !== 2 || matrix.shape[0] !== d || matrix.shape[1] !== d || sizeOf(coefficient) !== 1) {
    throw new Error(`${where}: expected a [${d}, ${d}] matrix and a scalar coefficient, got [${matrix.shape.join(', ')}] and [${coefficient.shape.join(', ')}]`);
  }
  const { scale, divisor } = attrs as { scale: number; divisor: number };
  const c = scalarOf(wasm, coefficient);
  const out = wasm.makeOutput(matrix.shape, 'float32');
  fused.rankOneUpdate(byteOffsetOf(wasm, out), byteOffsetOf(wasm, matrix), byteOffsetOf(wasm, u), d, Math.fround(scale), c, Math.fround(divisor));
  return out;
};

/** `v/σ` and `1/σ²` with σ the power of two at or below max|vᵢ| (1 for a zero vector), as `scaleByPowerOfTwo` of @mkor/sherman-morrison. */
function scaledByPowerOfTwo(v: Float32Array): { w: Float32Array; inverseScaleSquared: number } {
  let largest = 0;
  for (const x of v) largest = Number.isNaN(x) || Math.abs(x) > largest ? Math.abs(x) : largest;
  const sigma = largest > 0 ? 2 ** Math.min(127, Math.max(-126, Math.floor(Math.log2(largest)))) : Number.isNaN(largest) ? NaN : 1;
  const reciprocal = Math.fround(1 / sigma);
  return { w: v.map((x) => x / sigma), inverseScaleSquared: Math.fround(reciprocal * reciprocal) };
}

const NORM_NAMES = ['inf', 'max', 'fro'] as const;

const denseRefresh: KernelFunc = ({ inputs, backend, attrs }: KernelArgs) => {
  const where = FUSED_KERNELS.denseRefresh;
  const wasm = backend as WasmBackendInternals;
  const fused = fusedExports(wasm);
  const { inverse, v } = inputs as Record<'inverse' | 'v', TensorInfo>;
  checkFloat32(where, [inverse, v]);
  const d = sizeOf(v);
  if (inverse.shape.length !== 2 || inverse.shape[0] !== d || inverse.shape[1] !== d) {
    throw new Error(`${where}: expected a [${d}, ${d}] inverse for a vector of ${d}, got [${inverse.shape.join(', ')}]`);
  }
  const { stabilize, epsilon, zeta, norm, form, gamma } = attrs as Record<'stabilize' | 'epsilon' | 'zeta' | 'norm' | 'form' | 'gamma', number>;
  const f = Math.fround;
  const heap = () => memoryOf(wasm).buffer;
  const { w, inverseScaleSquared } = scaledByPowerOfTwo(new Float32Array(heap(), byteOffsetOf(wasm, v), d));
  // Scratch on the heap: w, P·w, the row sums of |P|, the row maxima of |P|, then u.
  const scratch = wasm.makeOutput([5 * d], 'float32');
  const output = wasm.makeOutput([d, d], 'float32');
  try {
    const base = byteOffsetOf(wasm, scratch);
    const at = (k: number) => base + 4 * k * d;
    const vector = (k: number) => new Float32Array(heap(), at(k), d);
    vector(0).set(w);
    const p = byteOffsetOf(wasm, inverse);
    fused.matrixVectorAndRowNorms(p, at(0), d, at(1), at(2), at(3));
    const largestOf = (values: Float32Array) => values.reduce((m, x) => (Number.isNaN(x) || x > m ? x : m), 0);
    const normName = NORM_NAMES[norm] ?? 'inf';
    const factorNorm =
      normName === 'inf' ? largestOf(vector(2)) : normName === 'max' ? largestOf(vector(3)) : f(Math.sqrt(fused.sumOfSquares(p, d * d)));
    const fired = stabilize === 1 && factorNorm > f(epsilon);
    const keep = fired ? f(zeta) : 1;
    const add = fired ? f(1 - zeta) : 0;
    // u = P̂w with P̂ = ζP + (1 − ζ)I when the stabiliser fired.
    const product = vector(1);
    const u = vector(4);
    for (let i = 0; i < d; i++) u[i] = fired ? f(f(keep * product[i]!) + f(add * w[i]!)) : product[i]!;
    let quadratic = 0;
    for (let i = 0; i < d; i++) quadratic += w[i]! * u[i]!;
    const q = f(quadratic);
    const beta = f(gamma);
    const alpha = f(1 - gamma);
    // Exact: (P̂ − c·uuᵀ)/β with c = α/(β/σ² + α·q); paper: βP̂ + c·uuᵀ with c = α/(β²(1/σ² + βα·q)).
    const [scale, coefficient, divisor] =
      form === 1
        ? [beta, -f(alpha / f(f(beta * beta) * f(inverseScaleSquared + f(f(beta * alpha) * q)))), 1]
        : [1, f(alpha / f(f(beta * inverseScaleSquared) + f(alpha * q))), beta];
    const out = byteOffsetOf(wasm, output);
    const nonFinite = fused.blendedRankOneUpdate(out, p, at(4), d, keep, add, scale, coefficient, divisor);
    if (nonFinite !== 0) {
      const result = new Float32Array(heap(), out, d * d);
      result.fill(0);
      for (let i = 0; i < d; i++) result[i * d + i] = 1;
    }
    return [output, writeScalar(wasm, fired ? 1 : 0, 'bool'), writeScalar(wasm, nonFinite === 0 ? 1 : 0, 'bool')];
  } catch (error) {
    wasm.disposeData(output.dataId);
    throw error;
  } finally {
    wasm.disposeData(scratch.dataId);
  }
};

/** The fused kernels' configs for the wasm backend. */
export function fusedKernelConfigs(): KernelConfig[] {
  const kernels: Record<keyof typeof FUSED_KERNELS, KernelFunc> = { finiteFlag, euclideanNorms, rescaleToNorm, adam, rankOneUpdate, denseRefresh };
  return Object.entries(kernels).map(([kernel, kernelFunc]) => ({
    kernelName: FUSED_KERNELS[kernel as keyof typeof FUSED_KERNELS],
    backendName: 'wasm',
    kernelFunc,
  }));
}
