export { KERNEL_MODES, createMkorKernels } from './kernels';
export type { KernelMode, MkorKernels, MkorKernelsOptions, PreconditionOptions, RefreshInverseOptions } from './kernels';
export { factorSize, isLowRankFactor } from './matrix';
export type { Float32Matrix, InverseFactor, LowRankFactor } from './matrix';
export { REFERENCE_BLEND, REFRESH_FORMS } from './refresh';
export type { RefreshForm } from './refresh';
