import { checkNumber, checkOneOf } from '@mkor/core';

/** The three forms of the inverse-factor update (see `@mkor/sherman-morrison`). */
export type FactorUpdateForm = 'exact' | 'paper' | 'reference';
/** Norms the stabiliser can watch (see `@mkor/norm-stabilizer`). */
export type StabilizerNorm = 'inf' | 'max' | 'fro';
/** How the preconditioned update is rescaled (MKOR step 6). */
export type RescaleMode = 'frobenius' | 'summed-norms' | 'none';

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
 * Options of the MKOR preconditioner. Every field has a default; `preset: 'reference'`
 * switches all of them to the behaviour of the authors' public code.
 */
export interface MkorOptions {
  /**
   * `'default'` (this library's defaults, below) or `'reference'`: the authors' public code step
   * by step — factors set to I at the first factor update, the 0.95/0.05 blend with a plain
   * Sherman–Morrison step, both factors of a layer reset to I at the next factor update once an
   * entry of either exceeds 2, `g` as the row sum (n·mean), the bias folded in, the rescale by
   * summed weight and bias norms, factor updates when `step % f == 0 || step < warmupSteps`.
   * Options given next to the preset override it.
   */
  readonly preset?: 'default' | 'reference';
  /** The inverse-factor update form. Default `'exact'`. */
  readonly form?: FactorUpdateForm;
  /** Factor momentum γ ∈ (0, 1) of eq. 3/4 (unused by the `'reference'` form). Default 0.95. */
  readonly gamma?: number;
  /** The norm-based stabiliser, or `false` for none. Default `{ epsilon: 100, zeta: 0.1, norm: 'inf' }`. */
  readonly stabilizer?: StabilizerOptions | false;
  /** Update the inverse factors every f steps (preconditioning happens every step). Default 10. */
  readonly factorUpdateInterval?: number;
  /** Update the factors on every step while `step < warmupSteps`. Default 0. */
  readonly warmupSteps?: number;
  /** Rescale of the preconditioned update. Default `'frobenius'` (`‖[∇W ∇b]‖_F / ‖[ΔW Δb]‖_F`). */
  readonly rescale?: RescaleMode;
  /**
   * Scale of the output-gradient vector g: `'mean'` (the mean of ∂Loss/∂y over rows) or `'sum'`
   * (n·mean, which undoes the 1/n of a mean-reduced loss, as the authors' code does: n is the row
   * count for dense layers, the batch size for conv2d layers). Default `'sum'`.
   */
  readonly gradientScale?: 'mean' | 'sum';
  /** Store the inverse factors rounded to IEEE half precision after each update. Default `'float32'`. */
  readonly factorPrecision?: 'float32' | 'float16';
  /** Compute per-step metrics (one scalar read-back per step). Default true. */
  readonly collectMetrics?: boolean;
}

/** {@link MkorOptions} with every default filled in and validated. */
export interface ResolvedMkorOptions {
  readonly preset: 'default' | 'reference';
  readonly form: FactorUpdateForm;
  readonly gamma: number;
  readonly stabilizer: StabilizerOptions | false;
  readonly factorUpdateInterval: number;
  readonly warmupSteps: number;
  readonly rescale: RescaleMode;
  readonly gradientScale: 'mean' | 'sum';
  readonly factorPrecision: 'float32' | 'float16';
  readonly collectMetrics: boolean;
  /** The authors' reset rule: reset both factors of a layer when an entry exceeds 2. */
  readonly resetAboveMaxEntry: number | false;
}

const DEFAULTS: ResolvedMkorOptions = {
  preset: 'default',
  form: 'exact',
  gamma: 0.95,
  stabilizer: { epsilon: 100, zeta: 0.1, norm: 'inf' },
  factorUpdateInterval: 10,
  warmupSteps: 0,
  rescale: 'frobenius',
  gradientScale: 'sum',
  factorPrecision: 'float32',
  collectMetrics: true,
  resetAboveMaxEntry: false,
};

const REFERENCE: Partial<ResolvedMkorOptions> = {
  preset: 'reference',
  form: 'reference',
  stabilizer: false,
  rescale: 'summed-norms',
  gradientScale: 'sum',
  resetAboveMaxEntry: 2,
};

/**
 * Fills in defaults (and the preset) and validates every option, throwing a clear error at
 * construction rather than misbehaving later.
 */
export function resolveMkorOptions(options: MkorOptions = {}): ResolvedMkorOptions {
  const where = 'mkor';
  const preset = checkOneOf(where, 'preset', options.preset ?? 'default', ['default', 'reference'] as const);
  const base = { ...DEFAULTS, ...(preset === 'reference' ? REFERENCE : {}) };
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  const merged = { ...base, ...defined } as ResolvedMkorOptions;
  checkOneOf(where, 'form', merged.form, ['exact', 'paper', 'reference'] as const);
  checkNumber(where, 'gamma', merged.gamma, { min: 0, max: 1, minExclusive: true, maxExclusive: true });
  if (merged.stabilizer !== false) {
    if (typeof merged.stabilizer !== 'object' || merged.stabilizer === null) {
      throw new TypeError(`${where}: stabilizer must be { epsilon, zeta, norm } or false`);
    }
    checkNumber(where, 'stabilizer.epsilon', merged.stabilizer.epsilon, { min: 0, minExclusive: true });
    checkNumber(where, 'stabilizer.zeta', merged.stabilizer.zeta, { min: 0, max: 1 });
    checkOneOf(where, 'stabilizer.norm', merged.stabilizer.norm, ['inf', 'max', 'fro'] as const);
  }
  checkNumber(where, 'factorUpdateInterval', merged.factorUpdateInterval, { min: 1, integer: true });
  checkNumber(where, 'warmupSteps', merged.warmupSteps, { min: 0, integer: true });
  checkOneOf(where, 'rescale', merged.rescale, ['frobenius', 'summed-norms', 'none'] as const);
  checkOneOf(where, 'gradientScale', merged.gradientScale, ['mean', 'sum'] as const);
  checkOneOf(where, 'factorPrecision', merged.factorPrecision, ['float32', 'float16'] as const);
  if (typeof merged.collectMetrics !== 'boolean') {
    throw new TypeError(`${where}: collectMetrics must be a boolean`);
  }
  const known = new Set([...Object.keys(DEFAULTS)]);
  for (const key of Object.keys(options)) {
    if (!known.has(key) || key === 'resetAboveMaxEntry') {
      throw new RangeError(`${where}: unknown option '${key}'`);
    }
  }
  return merged;
}
