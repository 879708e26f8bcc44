import { type NamedStateTensor, type Transform, TransformOptimizer, type TransformOptimizerOptions, type UpdateContext } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';
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
  /** Per layer: the source `step` of the statistics seen last, and the serial given to them. */
  private readonly serials = new Map<string, { source: number; serial: number }>();

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

  /**
   * One step, handing the statistics to the transform as `context.extras.statistics`: the
   * caller's (a data-parallel trainer's all-reduced ones) when given, else the latest captured
   * statistics of every second-order layer. Their `step` is renumbered per layer by this
   * optimizer (see {@link checkpointEntries}), so that statistics seen for the first time after a
   * resume are never mistaken for the ones the restored state already consumed.
   */
  override applyGradientsWithContext(
    variableGradients: tf.NamedTensorMap | NamedStateTensor[],
    override: Omit<UpdateContext, 'params'>,
  ): void {
    const given = override.extras?.statistics as StatisticsByLayer | undefined;
    const statistics = this.numbered(given ?? this.capturedStatistics());
    super.applyGradientsWithContext(variableGradients, { ...override, extras: { ...override.extras, statistics } });
  }

  /** The latest captured statistics of every second-order layer. */
  private capturedStatistics(): StatisticsByLayer {
    const statistics: Record<string, LayerStatistics | undefined> = {};
    for (const layer of this.capture.secondOrder) statistics[layer.name] = this.capture.statistics(layer.name);
    return statistics;
  }

  /**
   * The statistics with `step` replaced by this optimizer's serial of each layer: a statistic whose
   * source `step` differs from the last one seen gets the next serial. The serials are saved in
   * checkpoints, so numbering continues after a restore in a new process (where the source's own
   * counters start again at 1).
   */
  private numbered(statistics: StatisticsByLayer): StatisticsByLayer {
    const out: Record<string, LayerStatistics | undefined> = {};
    for (const [name, s] of Object.entries(statistics)) {
      if (s === undefined) continue;
      const seen = this.serials.get(name);
      const serial = seen !== undefined && seen.source === s.step ? seen.serial : (seen?.serial ?? 0) + 1;
      this.serials.set(name, { source: s.step, serial });
      out[name] = { ...s, step: serial };
    }
    return out;
  }

  /** The statistics serial of every layer seen, as `statistics/<layer>` int32 scalars. */
  protected override checkpointEntries(): NamedStateTensor[] {
    return [...this.serials].map(([name, { serial }]) => ({ name: `statistics/${name}`, tensor: tf.scalar(serial, 'int32') }));
  }

  /** Continues every layer's statistics serial after the saved one. */
  protected override restoreCheckpointEntries(entries: readonly NamedStateTensor[]): void {
    this.serials.clear();
    for (const { name, tensor } of entries) {
      if (!name.startsWith('statistics/')) continue;
      this.serials.set(name.slice('statistics/'.length), { source: Number.NaN, serial: tensor.dataSync()[0] as number });
    }
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
