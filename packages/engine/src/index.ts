export { engineNames, useEngine } from './engine';
export type { EngineChoice, EngineName, NativeGemmLoad, UseEngineOptions } from './engine';
