/**
 * Registration of the kernels in tfjs's kernel registry for the 'wasm' backend, keeping tfjs's
 * own kernels to delegate to and to restore.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, KernelFunc } from '@tensorflow/tfjs-core';
import { makeConv2DBackpropFilter, makeConv2DBackpropInput } from './conv-kernels';
import { fusedKernelConfigs, fusedKernelsSupported } from './fused-kernels';
import type { HeapGemm } from '@mkor/core';
import { makeBatchMatMul, makeFusedMatMul, type MatMulKernelContext } from './matmul-kernels';
import { StaleLayoutGuard } from './stale-layout-guard';

/** Options of {@link registerWasmKernels}. */
export interface WasmKernelOptions {
  /**
   * A provider that computes every product (and the im2col'd convolution gradients) on the wasm
   * heap, e.g. `(await loadOpenBlasGemm()).gemm` from `@mkor/openblas`. Without one, transposed
   * operands are transposed explicitly and tfjs's own (XNNPACK) plain product runs.
   */
  readonly gemm?: HeapGemm | null;
  /**
   * Register the fused kernels of `@mkor/core`'s `FUSED_KERNELS` (finite checks, norms, the
   * rescale, Adam, the Sherman–Morrison rank-1 step: one pass each instead of a chain of kernels).
   * Default true; they are left out, whatever this says, where WebAssembly SIMD is missing.
   */
  readonly fused?: boolean;
}

/** The kernels this package registers, by tfjs kernel name. */
export const overriddenKernels = [
  'BatchMatMul',
  '_FusedMatMul',
  'Conv2DBackpropFilter',
  'Conv2DBackpropInput',
] as const;

/** tfjs's own configs (undefined where wasm had none), while the package's are registered. */
let saved: Map<string, KernelConfig | undefined> | null = null;
/** The fused kernels registered now. */
let fusedRegistered: string[] = [];

function originalKernel(name: string): KernelFunc {
  const config = saved?.get(name) ?? tf.getKernel(name, 'wasm');
  if (config === undefined) {
    throw new Error(
      `registerWasmKernels: tfjs-backend-wasm's '${name}' kernel is not registered; ` +
        `import '@tensorflow/tfjs-backend-wasm' first`,
    );
  }
  return config.kernelFunc;
}

/**
 * Registers fast wasm-backend kernels: `BatchMatMul` and `_FusedMatMul` (transposed operands
 * without XNNPACK's slow transposed paths, and without its stale packed operand after a
 * reshape), `Conv2DBackpropFilter` (missing from tfjs-backend-wasm 4.22, so Conv2D layers can
 * train) and `Conv2DBackpropInput`. With `options.gemm`, every product runs on that provider.
 * Also registers the fused kernels (see {@link WasmKernelOptions.fused}) where WebAssembly SIMD
 * is available.
 *
 * Import `@tensorflow/tfjs-backend-wasm` first. Calling it again replaces the previous
 * registration; {@link unregisterWasmKernels} restores tfjs's kernels.
 */
export function registerWasmKernels(options: WasmKernelOptions = {}): void {
  const gemm = options.gemm ?? null;
  if (gemm !== null && typeof gemm !== 'function') {
    throw new TypeError(`registerWasmKernels: options.gemm must be a function or null, got ${typeof gemm}`);
  }
  const fused = options.fused ?? true;
  if (typeof fused !== 'boolean') throw new TypeError(`registerWasmKernels: options.fused must be a boolean, got ${typeof fused}`);
  const originals = saved ?? new Map(overriddenKernels.map((name) => [name, tf.getKernel(name, 'wasm')]));
  saved = originals;
  const context: MatMulKernelContext = {
    transpose: originalKernel('Transpose'),
    batchMatMul: originalKernel('BatchMatMul'),
    fusedMatMul: originalKernel('_FusedMatMul'),
    gemm,
    guard: new StaleLayoutGuard(),
  };
  const kernels: Record<(typeof overriddenKernels)[number], KernelFunc> = {
    BatchMatMul: makeBatchMatMul(context),
    _FusedMatMul: makeFusedMatMul(context),
    Conv2DBackpropFilter: makeConv2DBackpropFilter(context),
    Conv2DBackpropInput: makeConv2DBackpropInput(context),
  };
  for (const name of overriddenKernels) {
    const original = originals.get(name);
    if (tf.getKernel(name, 'wasm') !== undefined) tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({
      kernelName: name,
      backendName: 'wasm',
      kernelFunc: kernels[name],
      // The originals' setup binds the wasm functions they call: keep it for a backend not yet initialised.
      setupFunc: original?.setupFunc,
      disposeFunc: original?.disposeFunc,
    });
  }
  unregisterFused();
  if (fused && fusedKernelsSupported()) {
    for (const config of fusedKernelConfigs()) {
      tf.registerKernel(config);
      fusedRegistered.push(config.kernelName);
    }
  }
}

function unregisterFused(): void {
  for (const name of fusedRegistered) tf.unregisterKernel(name, 'wasm');
  fusedRegistered = [];
}

/** Restores tfjs's own wasm kernels and removes the fused ones; does nothing when {@link registerWasmKernels} was not called. */
export function unregisterWasmKernels(): void {
  if (saved === null) return;
  unregisterFused();
  for (const [name, original] of saved) {
    tf.unregisterKernel(name, 'wasm');
    if (original !== undefined) tf.registerKernel(original);
  }
  saved = null;
}

/** Whether {@link registerWasmKernels}'s kernels are registered now. */
export function wasmKernelsRegistered(): boolean {
  return saved !== null;
}
