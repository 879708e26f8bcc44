import { type Hyperparameter, checkHyperparameter, checkKnownOptions, checkNumber, checkOneOf } from '@mkor/core';
import { RENAMED_OPTIONS, type SecondOrderOptions } from '@mkor/second-order';
import type { InverseUpdateForm } from '@mkor/sherman-morrison';

/** The three forms of the inverse-factor update (see `@mkor/sherman-morrison`). */
export type FactorUpdateForm = InverseUpdateForm;
/** Norms the stabiliser can watch (see `@mkor/norm-stabilizer`). */
export type StabilizerNorm = 'inf' | 'max' | 'fro';

/** The paper's norm-based stabiliser (eq. 7/8): `if ‖F⁻¹‖ > ε: F⁻¹ ← ζF⁻¹ + (1−ζ)I`. */
export interface StabilizerOptions {
  /** Threshold ε on the factor's norm. */
  readonly epsilon: number;
  /** Blend ζ ∈ [0, 1] toward the identity. */
  readonly zeta: number;
  /** The norm watched; the paper's is `'inf'`. */
  readonly norm: StabilizerNorm;
}

/**
 * Options of the MKOR block. Every field has a default; `preset: 'reference'` switches them (and
 * the loop's scaling) to the behaviour of the authors' public code.
 */
export interface MkorBlockOptions {
  /**
   * `'default'` (this library's defaults, below) or `'reference'`: the authors' public code step
   * by step — factors set to I at the first refresh, the 0.95/0.05 blend with a plain
   * Sherman–Morrison step (`form: 'reference'`), both factors of a layer reset to I once an entry of
   * either exceeds 2 (instead of the stabiliser), and, in the layer loop, `g` as the row sum (n·mean)
   * and the rescale by summed weight and bias norms (`scaling: 'summed-norms'`). Options given next
   * to the preset override it, except `stabilizer`, which the reference refresh does not use.
   */
  readonly preset?: 'default' | 'reference';
  /** The inverse-factor update form. Default `'exact'`. */
  readonly form?: FactorUpdateForm;
  /** Factor momentum γ ∈ (0, 1) of eq. 3/4 (unused by the `'reference'` form), or a schedule of the step. Default 0.95. */
  readonly gamma?: Hyperparameter;
  /** The norm-based stabiliser, or `false` for none. Default `{ epsilon: 100, zeta: 0.1, norm: 'inf' }`. */
  readonly stabilizer?: StabilizerOptions | false;
  /** Refresh the inverse factors every f steps (an integer ≥ 1, or a schedule of the step); preconditioning happens every step. Default 10. */
  readonly factorUpdateInterval?: Hyperparameter;
  /** Refresh the factors on every step while `step < warmupSteps`. Default 0. */
  readonly warmupSteps?: number;
  /** Store the inverse factors rounded to IEEE half precision after each refresh. Default `'float32'`. */
  readonly factorPrecision?: 'float32' | 'float16';
  /**
   * How each inverse factor is held: `'dense'` (`d × d`), `'low-rank'` (`c·I + U·diag(m)·Uᵀ` with a
   * window of `rank` terms: O(d·r) refreshes, O(r·d·n) preconditioning, O(d·r) memory; see
   * `updateLowRankInverse` of `@mkor/sherman-morrison`), or `'auto'`: low-rank for a factor of size
   * `d > 4·rank`, where it costs less, dense otherwise. Default `'auto'` (`'dense'` with the
   * reference preset, whose reset rule reads the largest entry of each factor): measured by
   * `npm run bench:mkor-step` on the Fashion-MNIST MLP 784-512-512-10, the same steps to the target
   * as dense factors (60–63 against 61–63 over 3 seeds) in 0.6× the time, with 64× less factor
   * memory at d = 2048.
   */
  readonly factors?: 'dense' | 'low-rank' | 'auto';
  /** The window of a low-rank factor: how many terms it holds. Default 32. */
  readonly rank?: number;
}

/** {@link MkorBlockOptions} with every default filled in and checked. */
export interface ResolvedMkorBlockOptions {
  readonly preset: 'default' | 'reference';
  /** The refresh strategy: the paper's (stabiliser, then the update) or the authors' (reset flags); from the preset. */
  readonly refresh: 'stabilized' | 'reference';
  readonly form: FactorUpdateForm;
  readonly gamma: Hyperparameter;
  readonly stabilizer: StabilizerOptions | false;
  readonly factorUpdateInterval: Hyperparameter;
  readonly warmupSteps: number;
  readonly factorPrecision: 'float32' | 'float16';
  readonly factors: 'dense' | 'low-rank' | 'auto';
  readonly rank: number;
}

/** Options of MKOR as a method (`mkorPreconditioner`, `mkor`, `MkorOptimizer`): the block's and the layer loop's. */
export type MkorOptions = MkorBlockOptions & SecondOrderOptions;

/** The keys of {@link MkorBlockOptions}. */
export const MKOR_BLOCK_KEYS: readonly (keyof MkorBlockOptions)[] = [
  'preset',
  'form',
  'gamma',
  'stabilizer',
  'factorUpdateInterval',
  'warmupSteps',
  'factorPrecision',
  'factors',
  'rank',
];

/** The defaults of the layer loop's options that MKOR sets: its scaling (step 6), per preset. */
export function mkorLoopDefaults(preset: 'default' | 'reference'): Pick<SecondOrderOptions, 'scaling' | 'gradientScale'> {
  return preset === 'reference' ? { scaling: 'summed-norms', gradientScale: 'sum' } : { scaling: 'frobenius', gradientScale: 'sum' };
}

/**
 * Fills in the block's defaults (and the preset's) and checks every option, naming `where`:
 * clear errors at construction rather than misbehaviour later. Unknown options are refused.
 */
export function resolveMkorBlockOptions(options: MkorBlockOptions = {}, where = 'mkorBlock'): ResolvedMkorBlockOptions {
  if (options === null || typeof options !== 'object') throw new TypeError(`${where}: options must be an object, got ${String(options)}`);
  checkKnownOptions(where, options, MKOR_BLOCK_KEYS, RENAMED_OPTIONS);
  const preset = checkOneOf(where, 'preset', options.preset ?? 'default', ['default', 'reference'] as const);
  const reference = preset === 'reference';
  if (reference && options.stabilizer !== undefined && options.stabilizer !== false) {
    throw new RangeError(`${where}: the reference preset resets factors above 2 instead of stabilising them: stabilizer cannot be set with it`);
  }
  const stabilizer = reference ? false : (options.stabilizer ?? { epsilon: 100, zeta: 0.1, norm: 'inf' as const });
  if (stabilizer !== false) {
    if (typeof stabilizer !== 'object' || stabilizer === null) throw new TypeError(`${where}: stabilizer must be { epsilon, zeta, norm } or false`);
    checkNumber(where, 'stabilizer.epsilon', stabilizer.epsilon, { min: 0, minExclusive: true });
    checkNumber(where, 'stabilizer.zeta', stabilizer.zeta, { min: 0, max: 1 });
    checkOneOf(where, 'stabilizer.norm', stabilizer.norm, ['inf', 'max', 'fro'] as const);
  }
  const factors = checkOneOf(where, 'factors', options.factors ?? (reference ? 'dense' : 'auto'), ['dense', 'low-rank', 'auto'] as const);
  if (reference && factors !== 'dense') {
    throw new RangeError(`${where}: the reference preset's reset rule reads the largest entry of each factor, which needs factors: 'dense', got '${factors}'`);
  }
  return {
    preset,
    refresh: reference ? 'reference' : 'stabilized',
    form: checkOneOf(where, 'form', options.form ?? (reference ? 'reference' : 'exact'), ['exact', 'paper', 'reference'] as const),
    gamma: checkHyperparameter(where, 'gamma', options.gamma ?? 0.95, { min: 0, max: 1, minExclusive: true, maxExclusive: true }),
    stabilizer,
    factorUpdateInterval: checkHyperparameter(where, 'factorUpdateInterval', options.factorUpdateInterval ?? 10, { min: 1, integer: true }),
    warmupSteps: checkNumber(where, 'warmupSteps', options.warmupSteps ?? 0, { min: 0, integer: true }),
    factorPrecision: checkOneOf(where, 'factorPrecision', options.factorPrecision ?? 'float32', ['float32', 'float16'] as const),
    factors,
    rank: checkNumber(where, 'rank', options.rank ?? 32, { min: 1, integer: true }),
  };
}
