import {
  CaptureOptimizer,
  type CaptureRegistry,
  type PrepareModelOptions,
  type PreparableModel as CapturePreparableModel,
} from '@mkor/capture';
import { type BackendOptions, type ResolvedBackend, backendFromConfig, notRebuildable, resolveBackend } from '@mkor/first-order';
import * as tf from '@tensorflow/tfjs-core';

import { type MkorHybridOptions, type MkorState, mkor } from './mkor';
import { type MkorOptions, resolveMkorOptions } from './options';
import type { MkorPreconditionerState, MkorStepMetrics } from './preconditioner';

/** A model `@mkor/capture` can prepare (a `tf.LayersModel` or `tf.Sequential`). */
export type PreparableModel = CapturePreparableModel;

/** The authors' per-row clamp of the captured rows (`clipping_value`), used by the reference preset. */
const REFERENCE_ROW_CLAMP = 100;

/** Options of {@link MkorOptimizer}. */
export interface MkorOptimizerOptions extends MkorOptions, BackendOptions, Pick<PrepareModelOptions, 'maxDim'> {
  /**
   * Make it MKOR-H (see `@mkor/hybrid-switch`); the loss is then read back every step. Without a
   * `clock`, wall time is read with `performance.now()` (a rule `per: 'second'` needs one).
   */
  readonly hybrid?: MkorHybridOptions;
  /**
   * The first-order backend (step 7) as a transform from `@mkor/first-order`, which carries its
   * own learning rate. Default `adam({ learningRate })`.
   */
  readonly backend?: BackendOptions['backend'];
  /**
   * Learning rate of the default Adam backend. Default 1e-3. Refused next to a `backend`: the
   * backend's rate is the one used.
   */
  readonly learningRate?: number;
}

/**
 * Keys of `getConfig` that are not MKOR options: the backend's (it carries its learning rate),
 * MKOR-H's, `maxDim`, `resetAboveMaxEntry` (derived from the preset), and the `customObjects`
 * tfjs's deserialisation adds.
 */
const CONFIG_ONLY_KEYS = new Set(['backend', 'learningRate', 'hybrid', 'maxDim', 'resetAboveMaxEntry', 'customObjects']);

/** The switch rule of an MKOR-H optimizer rebuilt from a saved configuration (which cannot hold a rule). */
function unsavedRule(): MkorHybridOptions['rule'] {
  return {
    init: () => {
      throw notRebuildable('MkorOptimizer', 'the MKOR-H switch rule');
    },
    observe: () => ({ state: null, switchNow: false }),
  };
}

/**
 * MKOR as a `tf.Optimizer`, so `model.compile({ optimizer })` + `model.fit`, and
 * `optimizer.minimize(loss)` in a custom loop, both work.
 *
 * ```ts
 * const optimizer = new MkorOptimizer(model, { learningRate: 1e-3 });
 * model.compile({ optimizer, loss: 'categoricalCrossentropy' });
 * await model.fit(x, y);
 * ```
 *
 * Given a model, it prepares it with `@mkor/capture` (Dense and Conv2D layers become
 * second-order, the rest first-order: see `optimizer.capture.describe()`); given a
 * `CaptureRegistry` (from `prepareModel` or `createCapture`), it uses that. Its state saves and
 * restores through `getWeights`/`setWeights`, and a resumed run continues exactly. `getConfig`
 * reports the resolved MKOR hyperparameters, the learning rate, `backend: 'adam' | 'custom'`,
 * `hybrid: 'custom'` (or null) and `maxDim` (or null).
 */
export class MkorOptimizer extends CaptureOptimizer<MkorState> {
  /** The name tfjs serialisation knows this class by. */
  static override get className(): string {
    return 'MkorOptimizer';
  }

  /**
   * Rebuilds an optimizer from its {@link getConfig}, as `tf.loadLayersModel` does for a model
   * saved with `includeOptimizer: true`: it has no model until `attach(model)` (see
   * `CaptureOptimizer`), and `loadLayersModel` has restored its state already. A backend or MKOR-H
   * rule of your own cannot be held by a configuration: such an optimizer says so at its first step.
   */
  static override fromConfig<T extends tf.serialization.Serializable>(
    _cls: tf.serialization.SerializableConstructor<T>,
    config: tf.serialization.ConfigDict,
  ): T {
    const { backend, hybrid, maxDim } = config;
    const mkorOptions = Object.fromEntries(Object.entries(config).filter(([key]) => !CONFIG_ONLY_KEYS.has(key))) as MkorOptions;
    const rebuilt = new MkorOptimizer(undefined, {
      ...mkorOptions,
      backend: backendFromConfig('MkorOptimizer', backend as ResolvedBackend['config']['backend']),
      ...(maxDim === null || maxDim === undefined ? {} : { maxDim: maxDim as number }),
      ...(hybrid === null || hybrid === undefined ? {} : { hybrid: { rule: unsavedRule() } }),
    });
    return rebuilt as unknown as T;
  }

  private readonly mkorTransform: ReturnType<typeof mkor>;

  /**
   * @param target - the model to train (prepared here), a capture registry, or `undefined` for an
   *   optimizer that gets its model later with `attach(model)`.
   */
  constructor(target: PreparableModel | CaptureRegistry | undefined, options: MkorOptimizerOptions = {}) {
    const { backend, learningRate, maxDim, hybrid, ...mkorOptions } = options;
    const resolved = resolveMkorOptions(mkorOptions);
    const firstOrder = resolveBackend('MkorOptimizer', { backend, learningRate }, { methodUsesLearningRate: false });
    const hybridOptions: MkorHybridOptions | undefined =
      hybrid === undefined ? undefined : { clock: () => performance.now() / 1000, ...hybrid };
    super(
      target,
      {
        maxDim,
        // The authors clamp every input row and every scaled output-gradient row to ±100.
        ...(resolved.preset === 'reference' ? { rowClamp: REFERENCE_ROW_CLAMP } : {}),
      },
      (capture) =>
        mkor({
          ...mkorOptions,
          // Read at the first step: createCapture's layers register during the first forward pass.
          layers: () => capture.secondOrder,
          backend: firstOrder.backend,
          ...(hybridOptions === undefined ? {} : { hybrid: hybridOptions }),
        }),
      {
        statePrefix: 'mkor',
        checkpointExclude: (path) => path.endsWith('/metrics'),
        readsLoss: hybrid !== undefined,
        // The resolved MKOR hyperparameters; the backend, the switch rule and the model are not serialisable.
        config: {
          ...(resolved as unknown as tf.serialization.ConfigDict),
          ...firstOrder.config,
          hybrid: hybrid === undefined ? null : 'custom',
          maxDim: maxDim ?? null,
        },
      },
    );
    this.mkorTransform = this.transform as ReturnType<typeof mkor>;
  }

  /** The latest second-order step's metrics (stabiliser firings, rescale factors, timings), or null. */
  get metrics(): MkorStepMetrics | null {
    const state = this.currentState;
    return state === undefined ? null : this.mkorTransform.metrics(state);
  }

  /** The step at which MKOR-H switched to first-order steps, or −1. */
  get switchedAtStep(): number {
    const state = this.currentState;
    return state === undefined ? -1 : this.mkorTransform.switchedAtStep(state);
  }

  /**
   * Totals since the start: factor updates, stabiliser firings, factor resets, and refused steps:
   * `skippedSteps` counts every step refused (non-finite gradients, or a result that would have
   * written NaN or Inf into the weights or the state), `refusedResults` the second kind alone.
   */
  get totals(): MkorPreconditionerState['totals'] & { skippedSteps: number; refusedResults: number } {
    const state = this.currentState;
    const totals = state === undefined ? null : this.mkorTransform.preconditionerState(state)?.totals;
    return {
      ...(totals ?? { factorUpdates: 0, stabilizerFirings: 0, factorResets: 0 }),
      skippedSteps: state?.skippedSteps ?? 0,
      refusedResults: state?.refusedResults ?? 0,
    };
  }
}

tf.serialization.registerClass(MkorOptimizer);
