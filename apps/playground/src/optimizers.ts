/**
 * The five optimizers of the playground, each built through its package's public API on a model
 * of its own: MKOR, MKOR-H (MKOR with a switch rule from `@mkor/hybrid-switch`), KFAC and Eva
 * (all four with their default Adam backend at the given learning rate), and Adam itself.
 */
import { EvaOptimizer } from '@mkor/eva';
import { type SwitchRule, lossRateRule, switchAtStep } from '@mkor/hybrid-switch';
import { KfacOptimizer } from '@mkor/kfac';
import { MkorOptimizer } from '@mkor/mkor';
import * as tf from '@tensorflow/tfjs';

/** The optimizers the page offers, in the order it shows them (and colours them). */
export const OPTIMIZER_NAMES = ['MKOR', 'MKOR-H', 'KFAC', 'Eva', 'Adam'] as const;
/** One of {@link OPTIMIZER_NAMES}. */
export type OptimizerName = (typeof OPTIMIZER_NAMES)[number];

/**
 * Starting learning rates for this MLP: the rates `benchmarks/results/convergence-mlp.md` chose by
 * its sweep on the 784-128-128-10 MLP over 200 steps of batch 256 (MKOR-H uses MKOR's), except
 * KFAC's: its 0.009 overshoots in the first few dozen steps at the page's batch of 128 (the loss
 * rose to 3.9 by step 20 on wasm), so the page starts it at the sweep's next rate, 0.003.
 */
export const DEFAULT_LEARNING_RATES: Readonly<Record<OptimizerName, number>> = {
  MKOR: 0.009,
  'MKOR-H': 0.009,
  KFAC: 0.003,
  Eva: 0.003,
  Adam: 0.003,
};

/** When MKOR-H leaves MKOR's steps for its Adam backend's. */
export type SwitchChoice = { readonly kind: 'loss-rate' } | { readonly kind: 'at-step'; readonly step: number };

/** The `@mkor/hybrid-switch` rule of a {@link SwitchChoice}: `lossRateRule()` with its defaults, or `switchAtStep(step)`. */
export function switchRuleOf(choice: SwitchChoice): SwitchRule {
  return (choice.kind === 'loss-rate' ? lossRateRule() : switchAtStep(choice.step)) as SwitchRule;
}

/** The second-order optimizers: they report `metrics` and `switchedAtStep`. */
export type SecondOrder = MkorOptimizer | KfacOptimizer | EvaOptimizer;

/**
 * Where the second-order optimizers make a step's decisions on `backend`: on the device on webgl
 * and webgpu, where a read-back stalls the pipeline (and on webgpu in headless Chromium on
 * SwiftShader, a synchronous read returns zeros and loses the device); by read-back on wasm and
 * cpu, where it costs nothing.
 */
export function decisionsFor(backend: string): 'read-back' | 'device' {
  return backend === 'webgl' || backend === 'webgpu' ? 'device' : 'read-back';
}

/**
 * A new optimizer `name` for `model` (which the second-order ones prepare for capture), with the
 * step's decisions made as {@link decisionsFor} says for `backend`. On webgpu it refuses KFAC, which
 * inverts its factors from values read back synchronously (7 reads per inversion):
 * tfjs-backend-webgpu does that through `OffscreenCanvas`, which in headless Chromium on
 * SwiftShader returns zeros and loses the device (an error in KFAC's first inversion). MKOR-H
 * needs each step's loss: the page steps the second-order optimizers with `minimizeAsync`, which
 * reads it asynchronously.
 */
export function createOptimizer(name: OptimizerName, model: tf.LayersModel, learningRate: number, switchChoice: SwitchChoice, backend: string): tf.Optimizer {
  if (!(Number.isFinite(learningRate) && learningRate > 0)) throw new RangeError(`createOptimizer: learningRate of ${name} must be a positive number, got ${learningRate}`);
  if (backend === 'webgpu' && name === 'KFAC') {
    throw new Error(
      'createOptimizer: KFAC is not offered on webgpu: it must read values back synchronously (its factors, to invert them), ' +
        'which tfjs-backend-webgpu does through OffscreenCanvas; in headless Chromium on SwiftShader that returns zeros and loses the device. Choose webgl, wasm or cpu for it.',
    );
  }
  const decisions = decisionsFor(backend);
  switch (name) {
    case 'MKOR':
      return new MkorOptimizer(model, { learningRate, decisions });
    case 'MKOR-H':
      return new MkorOptimizer(model, { learningRate, decisions, hybrid: { rule: switchRuleOf(switchChoice) } });
    case 'KFAC':
      return new KfacOptimizer(model, { learningRate, decisions });
    case 'Eva':
      return new EvaOptimizer(model, { learningRate, decisions });
    case 'Adam':
      return tf.train.adam(learningRate);
    default:
      throw new Error(`createOptimizer: unknown optimizer '${String(name)}' (expected one of ${OPTIMIZER_NAMES.join(', ')})`);
  }
}

/** Whether an optimizer is one of the second-order ones (which have `metrics` and `switchedAtStep`). */
export function isSecondOrder(optimizer: tf.Optimizer): optimizer is SecondOrder {
  return optimizer instanceof MkorOptimizer || optimizer instanceof KfacOptimizer || optimizer instanceof EvaOptimizer;
}
