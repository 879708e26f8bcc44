/**
 * The optimizers the suites compare, as a registry of factories: each knows its name, its
 * learning-rate sweep and how to build a `tf.Optimizer` for a model (or capture registry).
 * First-order baselines are the `@mkor/first-order` transforms wrapped by `TransformOptimizer`
 * (tfjs has no LAMB, and the same code is MKOR's backend, so the comparison is like for like).
 * KFAC and Eva are `@mkor/kfac`'s and `@mkor/eva`'s optimizers, built from the same parts.
 */
import { TransformOptimizer } from '@mkor/core';
import { EvaOptimizer } from '@mkor/eva';
import { adam, lamb, sgd } from '@mkor/first-order';
import { lossRateRule } from '@mkor/hybrid-switch';
import { KfacOptimizer } from '@mkor/kfac';
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

/** MKOR with the suites' settings; `hybrid` makes it MKOR-H. */
function mkorFactory(name: string, description: string, hybrid: boolean, factors: 'auto' | 'dense' = 'auto'): OptimizerFactory {
  return {
    name,
    secondOrder: true,
    needsCovariance: false,
    description,
    learningRates: ADAM_RATES,
    create: (target, learningRate, options = {}) =>
      new MkorOptimizer(target, {
        backend: adam({ learningRate }),
        factorUpdateInterval: options.factorInterval ?? DEFAULT_FACTOR_INTERVAL,
        factorPrecision: options.factorPrecision ?? 'float32',
        factors,
        ...(hybrid ? { hybrid: { rule: lossRateRule(MKOR_H_RULE) } } : {}),
      }),
  };
}

const secondOrder: OptimizerFactory[] = [
  {
    name: 'KFAC',
    secondOrder: true,
    needsCovariance: true,
    description: 'KFAC (`@mkor/kfac` defaults: damping, EMA factors, exact damped inverses), Adam backend, inverses every f = 10 steps',
    learningRates: ADAM_RATES,
    create: (target, learningRate, options = {}) =>
      new KfacOptimizer(target, { backend: adam({ learningRate }), inverseInterval: options.factorInterval ?? DEFAULT_FACTOR_INTERVAL }),
  },
  {
    name: 'Eva',
    secondOrder: true,
    needsCovariance: false,
    description: 'Eva (`@mkor/eva` defaults: damping, EMA of the rank-1 vectors), Adam backend',
    learningRates: ADAM_RATES,
    create: (target, learningRate) => new EvaOptimizer(target, { backend: adam({ learningRate }) }),
  },
  mkorFactory(
    'MKOR',
    `MKOR (library defaults: 'exact' form, stabiliser, Frobenius rescale, factors 'auto': low-rank (r = 32) above size 128), Adam backend, f = ${DEFAULT_FACTOR_INTERVAL}`,
    false,
  ),
  mkorFactory('MKOR (dense)', `MKOR as above with dense factors (\`factors: 'dense'\`), Adam backend, f = ${DEFAULT_FACTOR_INTERVAL}`, false, 'dense'),
  mkorFactory('MKOR-H', `MKOR-H: MKOR as above, switching to its Adam backend by \`lossRateRule(${JSON.stringify(MKOR_H_RULE)})\``, true),
];

/** Every optimizer of the comparison, first-order baselines first. */
export const OPTIMIZERS: readonly OptimizerFactory[] = [...firstOrder, ...secondOrder];

/** Factor and preconditioning milliseconds of the latest step, when the optimizer reports them. */
export function stepCostMetrics(optimizer: tf.Optimizer): { factorMs: number; preconditionMs: number } | null {
  const metrics = (optimizer as { metrics?: unknown }).metrics;
  if (typeof metrics !== 'object' || metrics === null) return null;
  const { factorMs, preconditionMs } = metrics as { factorMs?: unknown; preconditionMs?: unknown };
  return typeof factorMs === 'number' && typeof preconditionMs === 'number' ? { factorMs, preconditionMs } : null;
}
