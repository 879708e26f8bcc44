export type { HeapGemm, HeapGemmCall } from '@mkor/core';
export { jsHeapGemm } from './js-gemm';
export { overriddenKernels, registerWasmKernels, unregisterWasmKernels, wasmKernelsRegistered } from './register';
export type { WasmKernelOptions } from './register';
export { fusedKernelsSupported } from './fused-kernels';
