export { shermanMorrison } from './sherman-morrison';
export type { ShermanMorrisonOptions } from './sherman-morrison';
export {
  DEFAULT_GAMMA,
  DEFAULT_INVERSE_UPDATE_FORM,
  INVERSE_UPDATE_FORMS,
  REFERENCE_BLEND,
  updateInverseFactor,
  updateInverseFactorRankR,
} from './inverse-update';
export type { InverseUpdateForm, InverseUpdateOptions } from './inverse-update';
export {
  applyInverseFactor,
  blendLowRankTowardIdentity,
  isLowRank,
  lowRankIdentity,
  lowRankNormBound,
  lowRankToDense,
  updateLowRankInverse,
} from './low-rank';
export type { InverseFactor, LowRankInverse, LowRankUpdate, LowRankUpdateOptions } from './low-rank';
