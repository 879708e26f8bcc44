import { type GuardDecisions, type Hyperparameter, checkHyperparameter, checkKnownOptions, checkNumber, checkOneOf } from '@mkor/core';

import { type ResolvedUpdateScaling, UPDATE_SCALINGS, type UpdateScaling } from './scaling';
import type { GradientScale } from './statistics';

/** The options of the layer loop, the same for every method (one vocabulary). */
export interface SecondOrderOptions {
  /** How the preconditioned updates are scaled (see {@link UpdateScaling}). The method's default: MKOR `'frobenius'`, KFAC and Eva `'kl-clip'`. */
  readonly scaling?: UpdateScaling;
  /** κ of the KL-clip, > 0. Default 0.001 (KAISA). */
  readonly klClip?: number;
  /**
   * `lr` in the KL-clip (a number or a schedule of the preconditioner's step): the backend's
   * learning rate. Required with `scaling: 'kl-clip'`; the optimizers pass their backend's.
   */
  readonly learningRate?: Hyperparameter;
  /**
   * Scale of the output-gradient statistics: `'mean'` as captured, or `'sum'` (default): times the
   * rows (dense) or the batch size (conv2d), which undoes a mean-reduced loss's `1/batch` as the
   * authors' MKOR code does (KFAC's output covariance: times the count squared).
   */
  readonly gradientScale?: GradientScale;
  /** Read back the scale factors and events each step for the step's metrics. Default true. */
  readonly collectMetrics?: boolean;
  /**
   * Where a step's decisions are made: `'read-back'` (default; the NaN guard reads two flags and
   * the loop one small vector of events and scale factors per step) or `'device'` (nothing is read
   * back during a step: the guard chooses on the device, the loop counts the blocks' events on the
   * device, and the metrics leave out the events only known there and the scale factors; the
   * totals read the counts when asked). For GPU backends, where every read-back stalls the
   * pipeline, and WebGPU, which cannot read synchronously. See `skipNonFinite` of `@mkor/core`
   * for what a refused step does then. The hybrid switch needs each step's loss: `minimize` reads
   * it synchronously, `minimizeAsync` (of `TransformOptimizer`) does not.
   */
  readonly decisions?: GuardDecisions;
}

/** The keys of {@link SecondOrderOptions}, for checking a method's options for unknown ones. */
export const SECOND_ORDER_OPTION_KEYS: readonly (keyof SecondOrderOptions)[] = ['scaling', 'klClip', 'learningRate', 'gradientScale', 'collectMetrics', 'decisions'];

/**
 * The options `SecondOrderOptimizer` takes for itself before its method sees the rest: listed as
 * known when a method refuses an unknown option, so the error names every option the class takes.
 */
export const OPTIMIZER_OWN_OPTION_KEYS: readonly string[] = ['backend', 'learningRate', 'maxDim', 'hybrid'];

/** Options renamed in this version, for the hint of an unknown-option error. */
export const RENAMED_OPTIONS: Readonly<Record<string, string>> = { rescale: 'scaling' };

/** {@link SecondOrderOptions} checked, with defaults. */
export interface ResolvedSecondOrderOptions extends ResolvedUpdateScaling {
  readonly gradientScale: GradientScale;
  readonly collectMetrics: boolean;
  readonly decisions: GuardDecisions;
}

/**
 * Checks the layer loop's options and fills in the defaults (`scaling` the method's
 * `defaultScaling`, κ 0.001, `gradientScale` `'sum'`, metrics on, decisions by read-back); errors name `where`. The
 * learning rate is kept only for the KL-clip, which requires it.
 */
export function resolveSecondOrderOptions(where: string, options: SecondOrderOptions, defaultScaling: UpdateScaling): ResolvedSecondOrderOptions {
  if (options === null || typeof options !== 'object') throw new TypeError(`${where}: options must be an object, got ${String(options)}`);
  if ((options.scaling as string | undefined) === 'rescale') {
    throw new RangeError(`${where}: scaling 'rescale' is now 'frobenius' (or 'summed-norms', the authors' rescale)`);
  }
  const scaling = checkOneOf(where, 'scaling', options.scaling ?? defaultScaling, UPDATE_SCALINGS);
  const klClip = checkNumber(where, 'klClip', options.klClip ?? 0.001, { min: 0, minExclusive: true });
  const learningRate =
    options.learningRate === undefined ? undefined : checkHyperparameter(where, 'learningRate', options.learningRate, { min: 0, minExclusive: true });
  if (scaling === 'kl-clip' && learningRate === undefined) {
    throw new RangeError(`${where}: scaling 'kl-clip' needs the learningRate (the backend's), or choose scaling 'frobenius', 'summed-norms' or 'none'`);
  }
  const collectMetrics = options.collectMetrics ?? true;
  if (typeof collectMetrics !== 'boolean') throw new TypeError(`${where}: collectMetrics must be a boolean, got ${String(collectMetrics)}`);
  return {
    scaling,
    klClip,
    learningRate: scaling === 'kl-clip' ? learningRate : undefined,
    gradientScale: checkOneOf(where, 'gradientScale', options.gradientScale ?? 'sum', ['mean', 'sum'] as const),
    collectMetrics,
    decisions: checkOneOf(where, 'decisions', options.decisions ?? 'read-back', ['read-back', 'device'] as const),
  };
}

/**
 * A method's options split into its block's (`blockKeys`) and the layer loop's, `undefined` values
 * dropped; any other option is refused (naming `where`, with the new name of a renamed one). The
 * error lists the known options, with `takenKeys`: those the caller took out before (a transform's
 * `layers`, an optimizer's `backend`).
 */
export function splitMethodOptions(
  where: string,
  options: object,
  blockKeys: readonly string[],
  takenKeys: readonly string[] = [],
): { readonly block: Readonly<Record<string, unknown>>; readonly loop: SecondOrderOptions } {
  if (options === null || typeof options !== 'object') throw new TypeError(`${where}: options must be an object, got ${String(options)}`);
  checkKnownOptions(where, options, [...blockKeys, ...SECOND_ORDER_OPTION_KEYS, ...takenKeys], RENAMED_OPTIONS);
  const block: Record<string, unknown> = {};
  const loop: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) {
    if (value !== undefined) (blockKeys.includes(key) ? block : loop)[key] = value;
  }
  return { block, loop };
}
