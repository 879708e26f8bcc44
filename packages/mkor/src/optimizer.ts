import { type CaptureRegistry, prepareModel } from '@mkor/capture';
import { type Transform, TransformOptimizer, type UpdateContext } from '@mkor/core';
import { adam } from '@mkor/first-order';
import * as tf from '@tensorflow/tfjs-core';

import { type MkorHybridOptions, type MkorState, mkor } from './mkor';
import { type MkorOptions, resolveMkorOptions } from './options';
import type { MkorPreconditionerState, MkorStepMetrics, Rank1Statistics } from './preconditioner';

/** A model `@mkor/capture` can prepare (a `tf.LayersModel` or `tf.Sequential`). */
export type PreparableModel = Parameters<typeof prepareModel>[0];

/** Options of {@link MkorOptimizer}. */
export interface MkorOptimizerOptions extends MkorOptions {
  /** Make it MKOR-H (see `@mkor/hybrid-switch`); the loss is then read back every step. */
  readonly hybrid?: MkorHybridOptions;
  /**
   * The first-order backend (step 7) as a transform from `@mkor/first-order`.
   * Default `adam({ learningRate })`.
   */
  readonly backend?: Transform<unknown>;
  /** Learning rate of the default Adam backend (ignored when `backend` is given). Default 1e-3. */
  readonly learningRate?: number;
  /** Widest layer (inputs or outputs) preconditioned when a model is prepared. Default 4096. */
  readonly maxDim?: number;
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
 * restores through `getWeights`/`setWeights`, and a resumed run continues exactly.
 */
export class MkorOptimizer extends TransformOptimizer<MkorState> {
  /** The name tfjs serialisation knows this class by. */
  static override get className(): string {
    return 'MkorOptimizer';
  }

  /** Which layers are second-order, and their captured statistics. */
  readonly capture: CaptureRegistry;
  private readonly options: MkorOptimizerOptions;
  private readonly mkorTransform: ReturnType<typeof mkor>;
  /** Whether this optimizer prepared the model itself (and so undoes that on dispose). */
  private readonly ownsCapture: boolean;

  constructor(target: PreparableModel | CaptureRegistry, options: MkorOptimizerOptions = {}) {
    const { backend, learningRate, maxDim, hybrid, ...mkorOptions } = options;
    resolveMkorOptions(mkorOptions);
    if (learningRate !== undefined && !(typeof learningRate === 'number' && Number.isFinite(learningRate) && learningRate > 0)) {
      throw new RangeError(`MkorOptimizer: learningRate must be a positive finite number, got ${String(learningRate)}`);
    }
    const ownsCapture = !isCaptureRegistry(target);
    const capture = isCaptureRegistry(target) ? target : prepareModel(target, maxDim === undefined ? {} : { maxDim });
    const transform = mkor({
      ...mkorOptions,
      // Read at the first step: createCapture's layers register during the first forward pass.
      layers: () => capture.secondOrder,
      backend: backend ?? adam({ learningRate: learningRate ?? 1e-3 }),
      ...(hybrid === undefined ? {} : { hybrid }),
    });
    super(transform, {
      statePrefix: 'mkor',
      checkpointExclude: (path) => path.endsWith('/metrics'),
      readsLoss: hybrid !== undefined,
    });
    this.capture = capture;
    this.options = options;
    this.mkorTransform = transform;
    this.ownsCapture = ownsCapture;
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

  /** Totals since the start: factor updates, stabiliser firings, factor resets, skipped steps. */
  get totals(): MkorPreconditionerState['totals'] & { skippedSteps: number } {
    const state = this.currentState;
    const totals = state === undefined ? null : this.mkorTransform.preconditionerState(state)?.totals;
    return { ...(totals ?? { factorUpdates: 0, stabilizerFirings: 0, factorResets: 0 }), skippedSteps: state?.skippedSteps ?? 0 };
  }

  /** Hands the latest captured statistics of every second-order layer to the step. */
  protected override stepContext(): Omit<UpdateContext, 'params' | 'loss'> {
    const statistics: Record<string, Rank1Statistics | undefined> = {};
    for (const layer of this.capture.secondOrder) statistics[layer.name] = this.capture.statistics(layer.name);
    return { extras: { statistics } };
  }

  /** The resolved MKOR hyperparameters (the backend transform and the model are not serialisable). */
  override getConfig(): tf.serialization.ConfigDict {
    const { backend, learningRate, maxDim, hybrid, ...mkorOptions } = this.options;
    return {
      ...(resolveMkorOptions(mkorOptions) as unknown as tf.serialization.ConfigDict),
      backend: backend === undefined ? 'adam' : 'custom',
      hybrid: hybrid === undefined ? null : 'custom',
      learningRate: learningRate ?? null,
      maxDim: maxDim ?? null,
    };
  }

  /**
   * Frees the optimizer's state; when the optimizer prepared the model itself, also undoes the
   * preparation and frees the captured statistics (a registry passed in stays the caller's).
   */
  override dispose(): void {
    super.dispose();
    if (this.ownsCapture) this.capture.release();
  }
}

function isCaptureRegistry(target: unknown): target is CaptureRegistry {
  return typeof target === 'object' && target !== null && 'secondOrder' in target && 'statistics' in target;
}

tf.serialization.registerClass(MkorOptimizer);
