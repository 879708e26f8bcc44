export type { HeapGemm, HeapGemmCall } from './heap-gemm';
export { defaultAddonPath, loadOpenBlasGemm } from './load';
export type { OpenBlasGemmLoad } from './load';
