/**
 * `@mkor/grad-rescale` — MKOR step 6: rescale a preconditioned update to the gradient's norm,
 * per tensor or over a layer's weight and bias together (the authors' variant), with fallbacks
 * that never let NaN reach the weights.
 */
export {
  frobeniusNorm,
  rescaleFactor,
  rescaleToNormWithFactor,
  rescaleFactorSummedNorms,
  rescaleToNorm,
  rescaleToSummedNorms,
} from './rescale';
export type { WeightAndBias } from './rescale';
