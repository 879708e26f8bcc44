/**
 * The Conv2D gradients for the wasm backend (NHWC): `Conv2DBackpropFilter`, which
 * tfjs-backend-wasm 4.22 lacks, and `Conv2DBackpropInput`, both as an im2col and one product.
 */
import { backend_util, type KernelFunc, type NamedAttrMap, type NamedTensorInfoMap, type TensorInfo } from '@tensorflow/tfjs-core';
import { product, type MatMulKernelContext } from './matmul-kernels';
import { disposeAll, heapView, type WasmBackendInternals } from './wasm-backend';

interface ConvGradAttrs {
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number | backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

interface KernelArgs {
  inputs: NamedTensorInfoMap;
  backend: unknown;
  attrs?: NamedAttrMap;
}

function convInfoFor(
  where: string,
  inputShape: readonly number[],
  filterShape: readonly number[],
  attrs: ConvGradAttrs,
): backend_util.Conv2DInfo {
  if (attrs.dataFormat !== 'NHWC') {
    throw new Error(`${where}: only dataFormat 'NHWC' is supported on wasm, got '${attrs.dataFormat}'`);
  }
  return backend_util.computeConv2DInfo(
    inputShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    'channelsLast',
  );
}

/** Where patch element (kh, kw) of output pixel (oh, ow) reads: visits each in-bounds pair. */
function forEachPatchElement(
  info: backend_util.Conv2DInfo,
  visit: (row: number, column: number, pixel: number) => void,
): void {
  const { batchSize, inHeight, inWidth, outHeight, outWidth, filterHeight, filterWidth } = info;
  const { strideHeight, strideWidth, dilationHeight, dilationWidth, padInfo } = info;
  for (let b = 0; b < batchSize; b++) {
    for (let oh = 0; oh < outHeight; oh++) {
      for (let ow = 0; ow < outWidth; ow++) {
        const row = (b * outHeight + oh) * outWidth + ow;
        for (let kh = 0; kh < filterHeight; kh++) {
          const ih = oh * strideHeight - padInfo.top + kh * dilationHeight;
          if (ih < 0 || ih >= inHeight) continue;
          for (let kw = 0; kw < filterWidth; kw++) {
            const iw = ow * strideWidth - padInfo.left + kw * dilationWidth;
            if (iw < 0 || iw >= inWidth) continue;
            visit(row, kh * filterWidth + kw, (b * inHeight + ih) * inWidth + iw);
          }
        }
      }
    }
  }
}

/** The patches of `x` as rows: [batch·outHeight·outWidth, filterHeight·filterWidth·inChannels]. */
function im2col(backend: WasmBackendInternals, x: TensorInfo, info: backend_util.Conv2DInfo): TensorInfo {
  const c = info.inChannels;
  const patch = info.filterHeight * info.filterWidth * c;
  const rows = info.batchSize * info.outHeight * info.outWidth;
  const cols = backend.makeOutput([rows, patch], 'float32');
  const out = heapView(backend, cols);
  const input = heapView(backend, x);
  out.fill(0);
  forEachPatchElement(info, (row, column, pixel) => {
    const to = row * patch + column * c;
    const from = pixel * c;
    for (let ch = 0; ch < c; ch++) out[to + ch] = input[from + ch]!;
  });
  return cols;
}

/** Sums patch rows back into an image of `info`'s input shape (the adjoint of im2col). */
function col2im(backend: WasmBackendInternals, cols: TensorInfo, info: backend_util.Conv2DInfo): TensorInfo {
  const c = info.inChannels;
  const patch = info.filterHeight * info.filterWidth * c;
  const image = backend.makeOutput([info.batchSize, info.inHeight, info.inWidth, c], 'float32');
  const out = heapView(backend, image);
  const source = heapView(backend, cols);
  out.fill(0);
  forEachPatchElement(info, (row, column, pixel) => {
    const from = row * patch + column * c;
    const to = pixel * c;
    for (let ch = 0; ch < c; ch++) out[to + ch]! += source[from + ch]!;
  });
  return image;
}

function asMatrix(t: TensorInfo, rows: number, columns: number): TensorInfo {
  return { ...t, shape: [rows, columns] };
}

/** The `Conv2DBackpropFilter` kernel function: dW = im2col(x)ᵀ · dy. */
export function makeConv2DBackpropFilter(context: MatMulKernelContext): KernelFunc {
  return ({ inputs, backend: untypedBackend, attrs }: KernelArgs) => {
    const backend = untypedBackend as WasmBackendInternals;
    const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
    const { filterShape, ...conv } = attrs as unknown as ConvGradAttrs & { filterShape: number[] };
    const info = convInfoFor('Conv2DBackpropFilter', x.shape, filterShape, conv);
    const cols = im2col(backend, x, info);
    try {
      const rows = cols.shape[0]!;
      const dw = product(context, backend, cols, asMatrix(dy, rows, info.outChannels), true, false);
      return { ...dw, shape: [...filterShape] };
    } finally {
      disposeAll(backend, [cols]);
    }
  };
}

/** The `Conv2DBackpropInput` kernel function: dx = col2im(dy · Wᵀ). */
export function makeConv2DBackpropInput(context: MatMulKernelContext): KernelFunc {
  return ({ inputs, backend: untypedBackend, attrs }: KernelArgs) => {
    const backend = untypedBackend as WasmBackendInternals;
    const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
    const { inputShape, ...conv } = attrs as unknown as ConvGradAttrs & { inputShape: number[] };
    const info = convInfoFor('Conv2DBackpropInput', inputShape, filter.shape, conv);
    const rows = info.batchSize * info.outHeight * info.outWidth;
    const patch = info.filterHeight * info.filterWidth * info.inChannels;
    const dcols = product(
      context,
      backend,
      asMatrix(dy, rows, info.outChannels),
      asMatrix(filter, patch, info.outChannels),
      false,
      true,
    );
    try {
      return col2im(backend, dcols, info);
    } finally {
      disposeAll(backend, [dcols]);
    }
  };
}
