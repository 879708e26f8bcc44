export { FACTOR_NORMS, REFERENCE_STABILIZER, factorNorm, stabilize, stabilizeDeferred } from './stabilizer';
export type {
  BlendStabilizeOptions,
  FactorNorm,
  ResetStabilizeOptions,
  StabilizeMode,
  StabilizeOptions,
} from './stabilizer';
