export type { HeapGemm, HeapGemmCall } from './heap-gemm';
