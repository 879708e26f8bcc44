import { type NamedStateTensor, type Transform, TransformOptimizer, type TransformOptimizerOptions, type UpdateContext } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';

import { type PrepareModelOptions, prepareModel } from './prepare-model';
import { type StatisticsByLayer, extrasWithStatistics, statisticsOf } from './statistics-channel';
import type { CaptureRegistry, LayerStatistics } from './types';

/** A model {@link prepareModel} can prepare (a `tf.LayersModel` or `tf.Sequential`). */
export type PreparableModel = LayersModel;

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
 * Every trainable variable of a registry's model by its place, `<layer>/kernel`, `<layer>/bias`
 * (second-order layers) or `<layer>/<index>` (first-order layers): names that survive saving and
 * loading a model, while variable names may not.
 */
function variablePlaces(capture: CaptureRegistry): Map<string, string> {
  const places = new Map<string, string>();
  for (const layer of capture.secondOrder) {
    places.set(`${layer.name}/kernel`, layer.kernelName);
    if (layer.biasName !== undefined) places.set(`${layer.name}/bias`, layer.biasName);
  }
  for (const layer of capture.firstOrder) layer.variables.forEach((name, i) => places.set(`${layer.name}/${i}`, name));
  return places;
}

/**
 * A registry that forwards to one bound later: what an optimizer holds before it has a model
 * (rebuilt by `tf.loadLayersModel` from a saved configuration) until `attach(model)`. Before
 * then, reading it throws an error saying so; releasing it does nothing.
 */
class AttachedCapture implements CaptureRegistry {
  private target: CaptureRegistry | undefined;

  constructor(private readonly where: string) {}

  get bound(): boolean {
    return this.target !== undefined;
  }

  bind(registry: CaptureRegistry): void {
    this.target = registry;
  }

  private get registry(): CaptureRegistry {
    if (this.target === undefined) {
      throw new Error(
        `${this.where}: no model is attached. An optimizer rebuilt from a saved model (tf.loadLayersModel) ` +
          'cannot see that model: call optimizer.attach(model) before training',
      );
    }
    return this.target;
  }

  get secondOrder(): CaptureRegistry['secondOrder'] {
    return this.registry.secondOrder;
  }

  get firstOrder(): CaptureRegistry['firstOrder'] {
    return this.registry.firstOrder;
  }

  describe(): string {
    return this.registry.describe();
  }

  layerForVariable(variableName: string): ReturnType<CaptureRegistry['layerForVariable']> {
    return this.registry.layerForVariable(variableName);
  }

  statistics(layerName: string): LayerStatistics | undefined {
    return this.registry.statistics(layerName);
  }

  release(): void {
    this.target?.release();
  }
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
 * - Given `undefined` (what a subclass's `fromConfig` does when `tf.loadLayersModel` rebuilds the
 *   optimizer of a model saved with `includeOptimizer: true`), it has no model until
 *   {@link CaptureOptimizer.attach}; a step before that throws an error saying so.
 *
 * The transform is built by `createTransform(capture)` at construction; it must read
 * `capture.secondOrder` lazily (at its first `init`), since `createCapture`'s layers register
 * during the first forward pass and an attached model comes later. If `createTransform` throws,
 * a preparation done here is undone before the error propagates. A data-parallel trainer passes
 * all-reduced statistics through `applyGradientsWithContext(grads, { extras: { statistics } })`,
 * which replace the captured ones.
 */
export class CaptureOptimizer<S> extends TransformOptimizer<S> {
  /** The name tfjs serialisation knows this class by. */
  static override get className(): string {
    return 'CaptureOptimizer';
  }

  /** Which layers are second-order, and their captured statistics. */
  readonly capture: CaptureRegistry;
  /** The same object as {@link capture}, with the binding of a model attached later. */
  private readonly attached: AttachedCapture;
  /** Whether this optimizer prepared the model itself (and so undoes that on dispose). */
  private ownsCapture = false;
  /** What {@link getConfig} reports. */
  private readonly config: tf.serialization.ConfigDict;
  /** Per layer: the source `step` of the statistics seen last, and the serial given to them. */
  private readonly serials = new Map<string, { source: number; serial: number }>();
  /** The variable names of the last checkpoint restored, by place (see {@link checkpointEntries}). */
  private readonly savedVariables = new Map<string, string>();

  constructor(
    target: PreparableModel | CaptureRegistry | undefined,
    private readonly prepareOptions: PrepareModelOptions,
    createTransform: (capture: CaptureRegistry) => Transform<S>,
    adapterOptions: CaptureOptimizerOptions = {},
  ) {
    const attached = new AttachedCapture(new.target.className);
    let owned = false;
    if (target !== undefined) {
      owned = !isCaptureRegistry(target);
      attached.bind(isCaptureRegistry(target) ? target : prepareModel(target, prepareOptions));
    }
    let transform: Transform<S>;
    try {
      transform = createTransform(attached);
    } catch (error) {
      if (owned) attached.release();
      throw error;
    }
    const { config = {}, ...transformOptimizerOptions } = adapterOptions;
    super(transform, transformOptimizerOptions);
    this.capture = attached;
    this.attached = attached;
    this.ownsCapture = owned;
    this.config = config;
  }

  /**
   * Gives an optimizer built without a model its model (or a registry): after
   * `const model = await tf.loadLayersModel(url)`, call `(model.optimizer as MkorOptimizer).attach(model)`;
   * training then continues from the state the saved model carried. A model is prepared here (and
   * released on `dispose`). Throws when a model is attached already.
   */
  attach(target: PreparableModel | CaptureRegistry): this {
    if (this.attached.bound) throw new Error(`${this.getClassName()}.attach: a model is attached already`);
    const borrowed = isCaptureRegistry(target);
    this.attached.bind(borrowed ? target : prepareModel(target, this.prepareOptions));
    this.ownsCapture = !borrowed;
    return this;
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
    const given = override.extras?.statistics === undefined ? undefined : statisticsOf(override, this.getClassName());
    const statistics = this.numbered(given ?? this.capturedStatistics());
    super.applyGradientsWithContext(variableGradients, { ...override, extras: extrasWithStatistics(override.extras, statistics) });
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

  /**
   * Entries of every checkpoint besides the state: the statistics serial of every layer seen
   * (`statistics/<layer>`, int32), and the name of every variable under its place in the model
   * (`variables/<layer>/<kernel | bias | index>`, a string), by which a restore maps the state of
   * a variable to the variable now in that place.
   */
  protected override checkpointEntries(): NamedStateTensor[] {
    const serials = [...this.serials].map(([name, { serial }]) => ({ name: `statistics/${name}`, tensor: tf.scalar(serial, 'int32') }));
    // Before a model is attached, the places of the checkpoint it was restored from (if any).
    const places = this.attached.bound ? variablePlaces(this.capture) : this.savedVariables;
    const variables = [...places].map(([place, name]) => ({ name: `variables/${place}`, tensor: tf.scalar(name, 'string') }));
    return [...serials, ...variables];
  }

  /** Continues every layer's statistics serial after the saved one; remembers the saved variable names. */
  protected override restoreCheckpointEntries(entries: readonly NamedStateTensor[]): void {
    this.serials.clear();
    this.savedVariables.clear();
    for (const { name, tensor } of entries) {
      if (name.startsWith('statistics/')) {
        this.serials.set(name.slice('statistics/'.length), { source: Number.NaN, serial: tensor.dataSync()[0] as number });
      } else if (name.startsWith('variables/')) {
        this.savedVariables.set(name.slice('variables/'.length), String(tensor.dataSync()[0]));
      }
    }
  }

  /**
   * A state entry's name with each saved variable name replaced by the name of the variable now in
   * the same place of the model (they differ for a model loaded in the process that saved it).
   */
  protected override checkpointEntryName(savedName: string): string {
    if (this.savedVariables.size === 0) return savedName;
    const current = variablePlaces(this.capture);
    for (const [place, saved] of this.savedVariables) {
      const now = current.get(place);
      if (now === undefined || now === saved) continue;
      if (savedName.endsWith(`/${saved}`)) return `${savedName.slice(0, -saved.length)}${now}`;
      const inner = savedName.indexOf(`/${saved}/`);
      if (inner >= 0) return `${savedName.slice(0, inner + 1)}${now}${savedName.slice(inner + 1 + saved.length)}`;
    }
    return savedName;
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
