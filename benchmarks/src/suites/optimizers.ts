/**
 * The optimizers the suites compare, as a registry of factories: each knows its name, its
 * learning-rate sweep and how to build a `tf.Optimizer` for a model (or capture registry).
 * First-order baselines are the `@mkor/first-order` transforms wrapped by `TransformOptimizer`
 * (tfjs has no LAMB, and the same code is MKOR's backend, so the comparison is like for like).
 * KFAC and Eva come from `@mkor/kfac` and `@mkor/eva`, loaded at run time: when a package does
 * not (yet) export its optimizer the suites say so and go on without it.
 */
import { TransformOptimizer } from '@mkor/core';
import { adam, lamb, sgd } from '@mkor/first-order';
import { lossRateRule } from '@mkor/hybrid-switch';
import { MkorOptimizer } from '@mkor/mkor';
import type * as tf from '@tensorflow/tfjs-core';

import type { OptimizerTarget } from './tasks';

/** Options the suites vary besides the learning rate. */
export interface FactoryOptions {
  /** Refresh interval f of the (inverse) factors: MKOR's `factorUpdateInterval`, KFAC's `inverseInterval`. */
  readonly factorInterval?: number;
  /** MKOR's `factorPrecision` (fp16 storage of the inverse factors). */
  readonly factorPrecision?: 'float32' | 'float16';
}

/** One optimizer of the comparison. */
export interface OptimizerFactory {
  readonly name: string;
  /** Whether it preconditions (and so has factor and preconditioning costs). */
  readonly secondOrder: boolean;
  /** How it is configured, in words, for the reports. */
  readonly description: string;
  /** Whether a hand-made capture registry must record full covariances (KFAC) — `createCapture({ covariance: true })`. */
  readonly needsCovariance: boolean;
  /** The learning rates of the sweep (the middle one is the smoke runs' choice). */
  readonly learningRates: readonly number[];
  /** Builds the optimizer. */
  create(target: OptimizerTarget, learningRate: number, options?: FactoryOptions): tf.Optimizer;
}

const ADAM_RATES = [3e-4, 1e-3, 3e-3] as const;
/** Default refresh interval of the comparison (the paper's f = 10 for MKOR). */
export const DEFAULT_FACTOR_INTERVAL = 10;

/** The MKOR-H switch rule used by the suites (documented in docs/benchmarks.md). */
export const MKOR_H_RULE = { window: 20, threshold: 0.1, patience: 5, minSteps: 20 } as const;

const firstOrder: OptimizerFactory[] = [
  {
    name: 'SGD',
    secondOrder: false,
    needsCovariance: false,
    description: 'SGD with heavy-ball momentum 0.9',
    learningRates: [0.01, 0.03, 0.1],
    create: (_target, learningRate) => new TransformOptimizer(sgd({ learningRate, momentum: 0.9 })),
  },
  {
    name: 'Adam',
    secondOrder: false,
    needsCovariance: false,
    description: 'Adam (β₁ 0.9, β₂ 0.999, ε 1e-8)',
    learningRates: ADAM_RATES,
    create: (_target, learningRate) => new TransformOptimizer(adam({ learningRate })),
  },
  {
    name: 'LAMB',
    secondOrder: false,
    needsCovariance: false,
    description: 'LAMB (Adam moments, layer-wise trust ratio, no weight decay)',
    learningRates: [3e-3, 1e-2, 3e-2],
    create: (_target, learningRate) => new TransformOptimizer(lamb({ learningRate })),
  },
];

const mkorFactories: OptimizerFactory[] = [
  {
    name: 'MKOR',
    secondOrder: true,
    needsCovariance: false,
    description: `MKOR (library defaults: 'exact' form, stabiliser, Frobenius rescale), Adam backend, f = ${DEFAULT_FACTOR_INTERVAL}`,
    learningRates: ADAM_RATES,
    create: (target, learningRate, options = {}) =>
      new MkorOptimizer(target, {
        backend: adam({ learningRate }),
        factorUpdateInterval: options.factorInterval ?? DEFAULT_FACTOR_INTERVAL,
        factorPrecision: options.factorPrecision ?? 'float32',
      }),
  },
  {
    name: 'MKOR-H',
    secondOrder: true,
    needsCovariance: false,
    description: `MKOR-H: MKOR as above, switching to its Adam backend by \`lossRateRule(${JSON.stringify(MKOR_H_RULE)})\``,
    learningRates: ADAM_RATES,
    create: (target, learningRate, options = {}) =>
      new MkorOptimizer(target, {
        backend: adam({ learningRate }),
        factorUpdateInterval: options.factorInterval ?? DEFAULT_FACTOR_INTERVAL,
        factorPrecision: options.factorPrecision ?? 'float32',
        hybrid: { rule: lossRateRule(MKOR_H_RULE) },
      }),
  },
];

/** A constructor `new (model, options)` as `@mkor/kfac` and `@mkor/eva` export them. */
type OptimizerClass = new (target: OptimizerTarget, options: Record<string, unknown>) => tf.Optimizer;

/** Loads an optional package's optimizer class; null (with the reason) when it is not available. */
async function optionalClass(packageName: string, exportName: string): Promise<{ value: OptimizerClass | null; reason: string }> {
  try {
    const module = (await import(packageName)) as Record<string, unknown>;
    const value = module[exportName];
    if (typeof value === 'function') return { value: value as OptimizerClass, reason: '' };
    return { value: null, reason: `${packageName} does not export ${exportName}` };
  } catch (error) {
    return { value: null, reason: `${packageName} could not be loaded (${(error as Error).message.split('\n')[0]})` };
  }
}

/** The registry: every optimizer available in this checkout, and the ones left out with why. */
export interface OptimizerRegistry {
  readonly factories: readonly OptimizerFactory[];
  readonly missing: readonly string[];
}

/** Builds the registry, loading `@mkor/kfac` and `@mkor/eva` when they export their optimizers. */
export async function loadOptimizers(): Promise<OptimizerRegistry> {
  const missing: string[] = [];
  const secondOrder: OptimizerFactory[] = [];
  const kfac = await optionalClass('@mkor/kfac', 'KfacOptimizer');
  if (kfac.value === null) missing.push(`KFAC: ${kfac.reason}`);
  else {
    const Kfac = kfac.value;
    secondOrder.push({
      name: 'KFAC',
      secondOrder: true,
      needsCovariance: true,
      description: 'KFAC (`@mkor/kfac` defaults: damping, EMA factors, exact damped inverses), Adam backend, inverses every f = 10 steps',
      learningRates: ADAM_RATES,
      create: (target, learningRate, options = {}) =>
        new Kfac(target, { backend: adam({ learningRate }), learningRate, inverseInterval: options.factorInterval ?? DEFAULT_FACTOR_INTERVAL }),
    });
  }
  const eva = await optionalClass('@mkor/eva', 'EvaOptimizer');
  if (eva.value === null) missing.push(`Eva: ${eva.reason}`);
  else {
    const Eva = eva.value;
    secondOrder.push({
      name: 'Eva',
      secondOrder: true,
      needsCovariance: false,
      description: 'Eva (`@mkor/eva` defaults: damping, EMA of the rank-1 vectors), Adam backend',
      learningRates: ADAM_RATES,
      create: (target, learningRate) => new Eva(target, { backend: adam({ learningRate }), learningRate }),
    });
  }
  return { factories: [...firstOrder, ...secondOrder, ...mkorFactories], missing };
}

/** Factor and preconditioning milliseconds of the latest step, when the optimizer reports them. */
export function stepCostMetrics(optimizer: tf.Optimizer): { factorMs: number; preconditionMs: number } | null {
  const metrics = (optimizer as { metrics?: unknown }).metrics;
  if (typeof metrics !== 'object' || metrics === null) return null;
  const { factorMs, preconditionMs } = metrics as { factorMs?: unknown; preconditionMs?: unknown };
  return typeof factorMs === 'number' && typeof preconditionMs === 'number' ? { factorMs, preconditionMs } : null;
}
