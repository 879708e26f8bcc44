/**
 * `BatchMatMul` and `_FusedMatMul` for the wasm backend: transposed operands are transposed
 * explicitly (XNNPACK's transposed products are ≈ 10–20× slower than the plain one), or every
 * product goes to a {@link HeapGemm} when one is given. A fused product of several matrices is
 * the product then a bias-and-activation pass here (tfjs-backend-wasm 4.22 gets it wrong).
 */
import type { KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import type { HeapGemm } from '@mkor/core';
import { broadcastOperand, gemmInto, productShape, withPlainOperands, type OriginalKernels } from './products';
import type { StaleLayoutGuard } from './stale-layout-guard';
import { disposeAll, heapView, type WasmBackendInternals } from './wasm-backend';

/** What the kernels need: tfjs's originals, and the optional provider. */
export interface MatMulKernelContext extends OriginalKernels {
  readonly fusedMatMul: KernelFunc;
  readonly gemm: HeapGemm | null;
  /** Shared by every product: the stale layout is XNNPACK's, whichever kernel packed it. */
  readonly guard: StaleLayoutGuard;
}

interface KernelArgs {
  inputs: NamedTensorInfoMap;
  backend: unknown;
  attrs?: NamedAttrMap;
}

function checkFloat32(where: string, tensors: readonly TensorInfo[]): void {
  for (const t of tensors) {
    if (t.dtype !== 'float32') throw new Error(`${where}: only float32 operands are supported, got ${t.dtype}`);
  }
}

/** `op(a) · op(b)` as a new tensor, by the provider or by tfjs's plain product. */
export function product(
  context: MatMulKernelContext,
  backend: WasmBackendInternals,
  a: TensorInfo,
  b: TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
): TensorInfo {
  const shape = productShape('BatchMatMul', a.shape, b.shape, transposeA, transposeB);
  if (context.gemm !== null) {
    const out = backend.makeOutput(shape.outShape, 'float32');
    gemmInto(context.gemm, backend, a, b, out, transposeA, transposeB, shape);
    return out;
  }
  return withPlainOperands(context, backend, a, b, transposeA, transposeB, (plainA, plainB) => {
    const fullA = broadcastOperand(backend, plainA, shape.batchShape);
    const fullB = broadcastOperand(backend, plainB, shape.batchShape);
    const safeB = context.guard.operand(backend, fullB);
    try {
      const out = context.batchMatMul({
        inputs: { a: fullA, b: safeB },
        backend: backend as never,
        attrs: { transposeA: false, transposeB: false },
      }) as TensorInfo;
      return { ...out, shape: shape.outShape };
    } finally {
      disposeAll(backend, [...new Set([fullA, fullB, safeB])].filter((t) => t !== plainA && t !== plainB));
    }
  });
}

/** The `BatchMatMul` kernel function. */
export function makeBatchMatMul(context: MatMulKernelContext): KernelFunc {
  return ({ inputs, backend, attrs }: KernelArgs) => {
    const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
    checkFloat32('BatchMatMul', [a, b]);
    const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
    return product(context, backend as WasmBackendInternals, a, b, transposeA, transposeB);
  };
}

type Activation = 'linear' | 'relu' | 'relu6' | 'prelu' | 'leakyrelu' | 'sigmoid' | 'elu';

/** Values broadcast along the last dimension of an output with `n` columns: size n or 1. */
function columnValues(where: string, name: string, values: Float32Array, n: number): (j: number) => number {
  if (values.length === n) return (j) => values[j]!;
  if (values.length === 1) return () => values[0]!;
  throw new Error(`${where}: ${name} must have ${n} elements (one per output column) or 1, got ${values.length}`);
}

/** Adds the bias and applies the activation in place, as tfjs's fused matMul defines them. */
function applyEpilogue(
  out: Float32Array,
  n: number,
  bias: Float32Array | null,
  activation: Activation,
  preluWeights: Float32Array | null,
  leakyreluAlpha: number,
): void {
  const where = '_FusedMatMul';
  if (bias !== null) {
    const biasAt = columnValues(where, 'bias', bias, n);
    const row = Float32Array.from({ length: n }, (_, j) => biasAt(j));
    for (let start = 0; start < out.length; start += n) {
      for (let j = 0; j < n; j++) out[start + j]! += row[j]!;
    }
  }
  switch (activation) {
    case 'linear':
      return;
    case 'relu':
      for (let i = 0; i < out.length; i++) if (!(out[i]! > 0)) out[i] = 0;
      return;
    case 'relu6':
      for (let i = 0; i < out.length; i++) out[i] = Math.min(Math.max(out[i]!, 0), 6);
      return;
    case 'leakyrelu':
      for (let i = 0; i < out.length; i++) if (out[i]! < 0) out[i]! *= leakyreluAlpha;
      return;
    case 'prelu': {
      const alphaAt = columnValues(where, 'preluActivationWeights', preluWeights ?? new Float32Array(0), n);
      for (let i = 0; i < out.length; i++) if (out[i]! < 0) out[i]! *= alphaAt(i % n);
      return;
    }
    case 'sigmoid':
      for (let i = 0; i < out.length; i++) out[i] = 1 / (1 + Math.exp(-out[i]!));
      return;
    case 'elu':
      for (let i = 0; i < out.length; i++) if (out[i]! < 0) out[i] = Math.expm1(out[i]!);
      return;
    default:
      throw new Error(`${where}: activation '${String(activation)}' is not supported`);
  }
}

/** The `_FusedMatMul` kernel function. */
export function makeFusedMatMul(context: MatMulKernelContext): KernelFunc {
  return ({ inputs, backend: untypedBackend, attrs }: KernelArgs) => {
    const backend = untypedBackend as WasmBackendInternals;
    const { a, b, bias, preluActivationWeights } = inputs as {
      a: TensorInfo;
      b: TensorInfo;
      bias?: TensorInfo;
      preluActivationWeights?: TensorInfo;
    };
    checkFloat32('_FusedMatMul', [a, b]);
    const { transposeA, transposeB, activation, leakyreluAlpha } = attrs as {
      transposeA: boolean;
      transposeB: boolean;
      activation: Activation;
      leakyreluAlpha?: number;
    };
    const batch = productShape('_FusedMatMul', a.shape, b.shape, transposeA, transposeB).batchShape;
    // tfjs-backend-wasm 4.22's fused product is wrong for more than one matrix (measured errors
    // of O(1)): only a single one goes to it, and only without a provider.
    if (context.gemm !== null || batch.some((d) => d !== 1)) {
      const out = product(context, backend, a, b, transposeA, transposeB);
      const n = out.shape[out.shape.length - 1]!;
      applyEpilogue(
        heapView(backend, out),
        n,
        bias === undefined ? null : heapView(backend, bias),
        activation,
        preluActivationWeights === undefined ? null : heapView(backend, preluActivationWeights),
        leakyreluAlpha ?? 0,
      );
      return out;
    }
    return withPlainOperands(context, backend, a, b, transposeA, transposeB, (plainA, plainB) => {
      const safeB = context.guard.operand(backend, plainB);
      try {
        return context.fusedMatMul({
          inputs: { ...inputs, a: plainA, b: safeB },
          backend: backend as never,
          attrs: { ...attrs, transposeA: false, transposeB: false },
        }) as TensorInfo;
      } finally {
        if (safeB !== plainB) disposeAll(backend, [safeB]);
      }
    });
  };
}
