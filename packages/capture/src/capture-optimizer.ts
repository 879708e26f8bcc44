import { type Transform, TransformOptimizer, type TransformOptimizerOptions, type UpdateContext } from '@mkor/core';
import type * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';

import { type PrepareModelOptions, prepareModel } from './prepare-model';
import type { CaptureRegistry, LayerStatistics } from './types';

/** A model {@link prepareModel} can prepare (a `tf.LayersModel` or `tf.Sequential`). */
export type PreparableModel = LayersModel;

/** The statistics a step receives in `context.extras.statistics`, keyed by layer name. */
export type StatisticsByLayer = Readonly<Record<string, LayerStatistics | undefined>>;

/** Options of {@link CaptureOptimizer}: the adapter's, and what `getConfig` reports. */
export interface CaptureOptimizerOptions extends TransformOptimizerOptions {
  /**
   * The optimizer's hyperparameters as `getConfig` reports them (resolved, with what is not
   * serialisable, such as a backend transform, named instead). Default `{}`.
   */
  readonly config?: tf.serialization.ConfigDict;
}

/** Whether `target` is a capture registry (from `prepareModel` or `createCapture`) rather than a model. */
export function isCaptureRegistry(target: unknown): target is CaptureRegistry {
  return typeof target === 'object' && target !== null && 'secondOrder' in target && 'statistics' in target;
}

/**
 * The base of every second-order `tf.Optimizer` that reads captured statistics (MKOR, KFAC,
 * Eva): a {@link TransformOptimizer} that owns or borrows a {@link CaptureRegistry} and hands
 * the latest statistics of every second-order layer to each step as
 * `context.extras.statistics` ({@link StatisticsByLayer}), and reports the hyperparameters it
 * was given as `config` ({@link CaptureOptimizerOptions}) through `getConfig`.
 *
 * - Given a model, it prepares it with {@link prepareModel} (with `prepareOptions`) and, on
 *   `dispose`, undoes the preparation and frees the statistics.
 * - Given a registry (from `prepareModel` or `createCapture`), it uses it and leaves it to the
 *   caller on `dispose`.
 *
 * The transform is built by `createTransform(capture)` once the capture exists; it should read
 * `capture.secondOrder` lazily (at its first `init`), since `createCapture`'s layers register
 * during the first forward pass. If `createTransform` throws, a preparation done here is undone
 * before the error propagates. A data-parallel trainer passes all-reduced statistics through
 * `applyGradientsWithContext(grads, { extras: { statistics } })`, which replace the captured ones.
 */
export class CaptureOptimizer<S> extends TransformOptimizer<S> {
  /** The name tfjs serialisation knows this class by. */
  static override get className(): string {
    return 'CaptureOptimizer';
  }

  /** Which layers are second-order, and their captured statistics. */
  readonly capture: CaptureRegistry;
  /** Whether this optimizer prepared the model itself (and so undoes that on dispose). */
  private readonly ownsCapture: boolean;
  /** What {@link getConfig} reports. */
  private readonly config: tf.serialization.ConfigDict;

  constructor(
    target: PreparableModel | CaptureRegistry,
    prepareOptions: PrepareModelOptions,
    createTransform: (capture: CaptureRegistry) => Transform<S>,
    adapterOptions: CaptureOptimizerOptions = {},
  ) {
    const borrowed = isCaptureRegistry(target);
    const capture = borrowed ? target : prepareModel(target, prepareOptions);
    let transform: Transform<S>;
    try {
      transform = createTransform(capture);
    } catch (error) {
      if (!borrowed) capture.release();
      throw error;
    }
    const { config = {}, ...transformOptimizerOptions } = adapterOptions;
    super(transform, transformOptimizerOptions);
    this.capture = capture;
    this.ownsCapture = !borrowed;
    this.config = config;
  }

  /** The hyperparameters given as `config` to the constructor (a copy; `{}` when none were). */
  override getConfig(): tf.serialization.ConfigDict {
    return { ...this.config };
  }

  /** Hands the latest captured statistics of every second-order layer to the step. */
  protected override stepContext(): Omit<UpdateContext, 'params' | 'loss'> {
    const statistics: Record<string, LayerStatistics | undefined> = {};
    for (const layer of this.capture.secondOrder) statistics[layer.name] = this.capture.statistics(layer.name);
    return { extras: { statistics } };
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
