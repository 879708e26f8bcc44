import { CPUKernel, GPU, HeadlessGLKernel, type IKernelRunShortcut, type KernelOutput, Texture, WebAssemblyKernel, WebGL2Kernel, WebGLKernel } from 'gpu.js';

import {
  LEFT_COMBINATION,
  LEFT_PRODUCT,
  LEFT_PROJECTION,
  MATRIX_VECTOR,
  RANK_ONE_PASS,
  RIGHT_COMBINATION,
  RIGHT_PRODUCT,
  RIGHT_PROJECTION,
} from './kernel-sources';
import {
  type Float32Matrix,
  type InverseFactor,
  checkFinite,
  checkFloat32Array,
  checkInverseFactor,
  checkMatrix,
  checkRatio,
  factorParts,
  isLowRankFactor,
} from './matrix';
import { REFRESH_FORMS, type RefreshForm, refreshPass, scaleByPowerOfTwo } from './refresh';

/** Where the kernels run: gpu.js's modes. */
export type KernelMode = 'gpu' | 'webgl2' | 'webgl' | 'headlessgl' | 'webasm' | 'cpu';

/** The modes {@link createMkorKernels} accepts. */
export const KERNEL_MODES: readonly KernelMode[] = ['gpu', 'webgl2', 'webgl', 'headlessgl', 'webasm', 'cpu'];

/** Options of {@link createMkorKernels}. */
export interface MkorKernelsOptions {
  /**
   * gpu.js's mode. `'gpu'` (the default) takes the first that works of headless-gl, WebGL 2,
   * WebGL and WebAssembly; the others ask for one and throw where it is missing. `'cpu'` runs the
   * kernels as JavaScript loops, everywhere.
   */
  readonly mode?: KernelMode;
}

/** Options of {@link MkorKernels.refreshInverse}. */
export interface RefreshInverseOptions {
  /** The update form (see `InverseUpdateForm` of `@mkor/sherman-morrison`). Default `'exact'`. */
  readonly form?: RefreshForm;
  /** Factor momentum γ ∈ (0, 1). Default 0.95. Unused by `'reference'` (still checked). */
  readonly gamma?: number;
  /** ζ ∈ [0, 1] of the stabiliser's blend `ζ·P + (1−ζ)·I` (eq. 7/8) before the update. Default 1 (no blend). */
  readonly stabilizerZeta?: number;
  /** λ ∈ [0, 1] of the blend `(1−λ)·P' + λ·I` after the update. Default 0 (no blend). */
  readonly identityBlend?: number;
  /**
   * Refuse NaN/±Inf in P and v, and a result beyond float32 (a scan of each on the CPU, O(d²)).
   * Default true.
   */
  readonly checkFinite?: boolean;
}

/** Options of {@link MkorKernels.precondition}. */
export interface PreconditionOptions {
  /** Refuse NaN/±Inf in the factors and the gradient (a scan of each on the CPU). Default true. */
  readonly checkFinite?: boolean;
}

/** MKOR's hot loops on plain Float32Arrays, as gpu.js kernels built once per size; made by {@link createMkorKernels}. */
export interface MkorKernels {
  /** The mode the kernels run in: the one asked for, or for `'gpu'` the one gpu.js found. */
  readonly mode: Exclude<KernelMode, 'gpu'>;
  /**
   * MKOR's refresh of a dense inverse factor P (Algorithm 1, lines 4–8) in one pass over P after
   * `u = S·v`: with the stabiliser's blend `S = ζ·P + (1−ζ)·I` (eq. 7/8), the update in the
   * chosen form (eq. 5/6; `'reference'` on `J = 0.95·S + 0.05·I`) and the blend toward the
   * identity, every form is
   *
   *     P' = a·P + b·u·uᵀ + c·I,
   *
   * e.g. `'exact'` without blends: `P' = (1/γ)·P − (1−γ)/(γ·(γ + (1−γ)·vᵀu))·u·uᵀ`, the inverse
   * of `γ·F + (1−γ)·v·vᵀ` by Sherman–Morrison. Two kernels: `P·w` (one reading pass, w = v/σ
   * scaled by a power of two so that no v overflows) and the update (one reading and one writing
   * pass); the O(d) coefficients in float64 between them. A symmetric P gives a symmetric P'.
   *
   * @param inverse - P, `[d, d]`, symmetric. Not modified.
   * @param v - the rank-1 statistic, `[d]`. Not modified.
   * @returns P' as a new `[d, d]` matrix.
   * @throws RangeError for mismatched sizes, γ outside (0, 1), ζ or λ outside [0, 1], an unknown
   *   form, or (with `checkFinite`) NaN/±Inf in P or v or a result beyond float32; TypeError for
   *   data that is not a Float32Array.
   */
  refreshInverse(inverse: Float32Matrix, v: Float32Array, options?: RefreshInverseOptions): Float32Matrix;
  /**
   * Kronecker-factored preconditioning, `ΔW = R⁻¹·G·L⁻¹` in the layout of TensorFlow.js's dense
   * kernels (paper eq. 1/2, `L⁻¹∇W R⁻¹` transposed; as `kroneckerPrecondition` of
   * `@mkor/second-order`): G is `[dIn, dOut]`, R⁻¹ (`inputInverse`) `[dIn, dIn]` and L⁻¹
   * (`outputInverse`) `[dOut, dOut]`. Each factor is dense (O(d²·n) for its side) or low-rank,
   * `c·I + U·diag(m)·Uᵀ`, applied as `c·G + U·(diag(m)·Uᵀ·G)` in O(r·dIn·dOut). In the GPU modes
   * the intermediate stays on the device (a gpu.js pipeline texture); only the result is read back.
   *
   * @returns ΔW as a new `[dIn, dOut]` matrix.
   * @throws RangeError for mismatched sizes or (with `checkFinite`) NaN/±Inf in the inputs; TypeError for data that is not a Float32Array.
   */
  precondition(inputInverse: InverseFactor, gradient: Float32Matrix, outputInverse: InverseFactor, options?: PreconditionOptions): Float32Matrix;
  /** How many kernels have been built (one per kernel and size): a cache that works keeps this fixed across calls of the same sizes. */
  readonly builtKernels: number;
  /** Frees every kernel and the WebGL context. The object must not be used afterwards. */
  destroy(): void;
}

/** The kernel classes of gpu.js, by the mode each implements. */
const KERNEL_CLASSES = [
  ['headlessgl', HeadlessGLKernel],
  ['webgl2', WebGL2Kernel],
  ['webgl', WebGLKernel],
  ['webasm', WebAssemblyKernel],
  ['cpu', CPUKernel],
] as const;

/** The mode a gpu.js kernel class implements. */
function modeOf(where: string, kernelClass: unknown): Exclude<KernelMode, 'gpu'> {
  const found = KERNEL_CLASSES.find(([, candidate]) => candidate === kernelClass);
  if (found === undefined) throw new Error(`${where}: gpu.js chose a kernel class this package does not know`);
  return found[0];
}

/** A kernel's settings: its source, output length and constants, and whether its output stays on the device. */
interface KernelSpec {
  readonly source: string;
  readonly output: number;
  readonly constants: Readonly<Record<string, number>>;
  readonly pipeline: boolean;
}

/**
 * Creates MKOR's kernels (see {@link MkorKernels}) on one gpu.js instance. Kernels are compiled on
 * first use for each size and cached; single precision (float32 textures) and the `'precision'`
 * tactic (highp) are required in the GPU modes — a device without float textures is refused, as
 * is a kernel gpu.js would silently run on the CPU instead.
 *
 * @throws RangeError for an unknown mode; Error when the mode is not available here or the
 *   device has no float32 textures.
 */
export function createMkorKernels(options: MkorKernelsOptions = {}): MkorKernels {
  const where = 'createMkorKernels';
  const requested = options.mode ?? 'gpu';
  if (!KERNEL_MODES.includes(requested)) throw new RangeError(`${where}: mode must be one of ${KERNEL_MODES.join(', ')}, got ${String(requested)}`);
  let gpu: GPU;
  try {
    gpu = new GPU({ mode: requested });
  } catch (error) {
    const hint = requested === 'headlessgl' ? ' (headless-gl needs the optional package gl, built, and an X display: run under xvfb-run)' : '';
    throw new Error(`${where}: gpu.js mode '${requested}' is not available here${hint}: ${(error as Error).message}`);
  }
  const mode = modeOf(where, gpu.Kernel);
  if ((mode === 'webgl' || mode === 'webgl2' || mode === 'headlessgl') && !GPU.isSinglePrecisionSupported) {
    gpu.destroy();
    throw new Error(`${where}: this device has no float32 textures (gpu.js single precision); the kernels would lose precision. Use mode 'cpu'.`);
  }
  const cache = new Map<string, IKernelRunShortcut>();

  /** The kernel `name` for `spec`, built on first use. */
  const kernel = (name: string, spec: KernelSpec): IKernelRunShortcut => {
    const key = `${name}:${spec.output}:${Object.values(spec.constants).join(',')}:${spec.pipeline}`;
    let built = cache.get(key);
    if (built === undefined) {
      built = gpu.createKernel(spec.source, {
        output: [spec.output],
        constants: spec.constants,
        precision: 'single',
        tactic: 'precision',
        pipeline: spec.pipeline,
        immutable: false,
      });
      cache.set(key, built);
    }
    return built;
  };

  /** Runs a kernel; refuses gpu.js's silent fall back to the CPU. */
  const run = (name: string, spec: KernelSpec, ...args: (Float32Array | number | Texture | KernelOutput)[]): Float32Array | Texture => {
    const built = kernel(name, spec);
    const result = (built as unknown as (...a: unknown[]) => unknown)(...args);
    if (mode !== 'cpu' && built.kernel instanceof CPUKernel) {
      throw new Error(`${where}: gpu.js could not compile the ${name} kernel for ${mode} and fell back to the CPU`);
    }
    return result as Float32Array | Texture;
  };

  const output = (result: Float32Array | Texture, rows: number, columns: number): Float32Matrix => {
    const data = result instanceof Texture ? (result.toArray() as Float32Array) : result;
    return { rows, columns, data: Float32Array.from(data) };
  };

  const refreshInverse = (inverse: Float32Matrix, v: Float32Array, settings: RefreshInverseOptions = {}): Float32Matrix => {
    const name = 'refreshInverse';
    checkMatrix(name, 'inverse', inverse);
    if (inverse.rows !== inverse.columns) throw new RangeError(`${name}: inverse must be square, got ${inverse.rows} × ${inverse.columns}`);
    const d = inverse.rows;
    checkFloat32Array(name, 'v', v, d);
    const form = settings.form ?? 'exact';
    if (!REFRESH_FORMS.includes(form)) throw new RangeError(`${name}: form must be one of ${REFRESH_FORMS.join(', ')}, got ${String(form)}`);
    const gamma = checkRatio(name, 'gamma', settings.gamma ?? 0.95, { min: 0, max: 1, open: true });
    const stabilizerZeta = checkRatio(name, 'stabilizerZeta', settings.stabilizerZeta ?? 1, { min: 0, max: 1 });
    const identityBlend = checkRatio(name, 'identityBlend', settings.identityBlend ?? 0, { min: 0, max: 1 });
    const finite = checkFiniteOption(name, settings.checkFinite);
    if (finite) {
      checkFinite(name, 'inverse', inverse.data);
      checkFinite(name, 'v', v);
    }
    const { scaled, inverseScaleSquared } = scaleByPowerOfTwo(v);
    const product = run('matrixVector', { source: MATRIX_VECTOR, output: d, constants: { inner: d }, pipeline: false }, inverse.data, scaled) as Float32Array;
    const pass = refreshPass({ form, gamma, stabilizerZeta, identityBlend }, product, scaled, inverseScaleSquared);
    const result = run(
      'rankOnePass',
      { source: RANK_ONE_PASS, output: d * d, constants: { columns: d }, pipeline: false },
      inverse.data,
      pass.u,
      Math.fround(pass.factorScale),
      Math.fround(pass.outerScale),
      Math.fround(pass.identityScale),
    );
    const refreshed = output(result, d, d);
    if (finite) checkFinite(name, 'the result (beyond float32)', refreshed.data);
    return refreshed;
  };

  const precondition = (inputInverse: InverseFactor, gradient: Float32Matrix, outputInverse: InverseFactor, settings: PreconditionOptions = {}): Float32Matrix => {
    const name = 'precondition';
    checkMatrix(name, 'gradient', gradient);
    const n = gradient.rows;
    const m = gradient.columns;
    checkInverseFactor(name, 'inputInverse', inputInverse, n);
    checkInverseFactor(name, 'outputInverse', outputInverse, m);
    if (checkFiniteOption(name, settings.checkFinite)) {
      checkFinite(name, 'gradient', gradient.data);
      for (const [part, values] of [...factorParts('inputInverse', inputInverse), ...factorParts('outputInverse', outputInverse)]) checkFinite(name, part, values);
    }
    const pipeline = mode !== 'cpu';
    let left: Float32Array | Texture;
    if (isLowRankFactor(inputInverse)) {
      const r = inputInverse.basis.columns;
      const projection = run('leftProjection', { source: LEFT_PROJECTION, output: r * m, constants: { columns: m, inner: n, rank: r }, pipeline }, inputInverse.basis.data, inputInverse.weights, gradient.data);
      left = run('leftCombination', { source: LEFT_COMBINATION, output: n * m, constants: { columns: m, rank: r }, pipeline }, Math.fround(inputInverse.scale), gradient.data, inputInverse.basis.data, projection);
    } else {
      left = run('leftProduct', { source: LEFT_PRODUCT, output: n * m, constants: { columns: m, inner: n }, pipeline }, inputInverse.data, gradient.data);
    }
    let result: Float32Array | Texture;
    if (isLowRankFactor(outputInverse)) {
      const r = outputInverse.basis.columns;
      const projection = run('rightProjection', { source: RIGHT_PROJECTION, output: n * r, constants: { columns: r, inner: m }, pipeline }, left, outputInverse.basis.data, outputInverse.weights);
      result = run('rightCombination', { source: RIGHT_COMBINATION, output: n * m, constants: { columns: m, rank: r }, pipeline: false }, Math.fround(outputInverse.scale), left, outputInverse.basis.data, projection);
    } else {
      result = run('rightProduct', { source: RIGHT_PRODUCT, output: n * m, constants: { columns: m, inner: m }, pipeline: false }, left, outputInverse.data);
    }
    return output(result, n, m);
  };

  return {
    mode,
    refreshInverse,
    precondition,
    get builtKernels() {
      return cache.size;
    },
    destroy: () => {
      cache.clear();
      gpu.destroy();
    },
  };
}

/** The `checkFinite` option: a boolean, default true. */
function checkFiniteOption(where: string, value: unknown): boolean {
  if (value === undefined) return true;
  if (typeof value !== 'boolean') throw new TypeError(`${where}: checkFinite must be a boolean, got ${String(value)}`);
  return value;
}

