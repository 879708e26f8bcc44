import * as tf from '@tensorflow/tfjs-core';

import { applyTransform, tensorsIn } from './memory';
import { type NamedStateTensor, flattenState, restoreState } from './state-io';
import type { Transform, UpdateContext } from './transform';
import { allFinite } from './validation';

/**
 * The format of the checkpoints {@link TransformOptimizer.getWeights} writes: 3 since the
 * second-order methods keep their state per layer under the block loop of `@mkor/second-order`
 * (`…/layers/<layer>/block/…`); 2 carried the format and the configuration with the methods' own
 * state names; 1 carried neither. Other formats are refused with an error saying which they are.
 */
export const CHECKPOINT_FORMAT = 3;

/** What changed at each earlier format, for the error that refuses it. */
const FORMAT_HISTORY: Readonly<Record<number, string>> = {
  2: 'format 2 named the second-order state by method (before the block loop of @mkor/second-order)',
};

/** The name of a checkpoint's entry under the state prefix: `<prefix>/checkpoint/<key>`. */
function checkpointEntryName(prefix: string, key: string): string {
  return `${prefix}/checkpoint/${key}`;
}

/** The part of tfjs's engine state that records a gradient tape (not in its public types). */
interface TapeState {
  gradientDepth: number;
  activeTape: { saved?: tf.Tensor[] }[] | null;
}

/**
 * Frees the tensors a gradient tape saved for a backward pass that will not run (its forward pass
 * threw); only for the outermost tape, which no enclosing gradient computation still needs.
 */
function freeAbandonedTape(): void {
  const state = (tf.engine() as unknown as { state: TapeState }).state;
  if (state.gradientDepth !== 0 || state.activeTape === null) return;
  for (const node of state.activeTape) tf.dispose(node.saved ?? []);
  state.activeTape = [];
}

/** Options of {@link TransformOptimizer}. */
export interface TransformOptimizerOptions {
  /** Read the loss back on every `minimize` and pass it as `context.loss` (the hybrid switch needs it). */
  readonly readsLoss?: boolean;
  /** Paths of the state left out of checkpoints (see `flattenState`). */
  readonly checkpointExclude?: (path: string) => boolean;
  /** The prefix of the state's names in `getWeights`. Default `'state'`. */
  readonly statePrefix?: string;
}

/**
 * A thin `tf.Optimizer` adapter around any {@link Transform} whose final updates are parameter
 * deltas (`w ← w + u`), so `model.compile({ optimizer })`, `model.fit` and `optimizer.minimize(f)`
 * work with it. The state is created at the first step (when the variables are known), each step
 * runs through {@link applyTransform} (tidy + disposal of replaced state), and the state saves and
 * restores through `getWeights`/`setWeights`. Subclasses that need per-step context (captured
 * statistics) pass it through {@link TransformOptimizer.applyGradientsWithContext}.
 */
export class TransformOptimizer<S> extends tf.Optimizer {
  /** The name tfjs serialisation knows this class by. */
  static get className(): string {
    return 'TransformOptimizer';
  }

  /**
   * `tf.Optimizer` answers `instanceof` by duck typing (any object with `minimize`,
   * `computeGradients` and `applyGradients`), which would make every tfjs optimizer an instance
   * of this class too; subclasses of this adapter use the prototype chain.
   */
  static override [Symbol.hasInstance](instance: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(this, instance);
  }

  private state: S | undefined;
  private pendingWeights: NamedStateTensor[] | undefined;
  /** Whether a `minimizeAsync` step awaits its loss: a step taken meanwhile would take its captured statistics. */
  private asyncStepInFlight = false;
  /** The tensors the latest `getWeights` made (not state), freed by the next one or `dispose`. */
  private issued: tf.Tensor[] = [];
  /** The variables of the latest step: a checkpoint restored after one is rebuilt at once. */
  private lastParams: Record<string, tf.Variable> | undefined;
  private readonly ioOptions: { exclude?: (path: string) => boolean };
  private readonly statePrefix: string;

  constructor(
    readonly transform: Transform<S>,
    private readonly adapterOptions: TransformOptimizerOptions = {},
  ) {
    super();
    if (transform === undefined || typeof transform.update !== 'function' || typeof transform.init !== 'function') {
      throw new TypeError(`${new.target.name}: expected a Transform with init and update`);
    }
    this.ioOptions = adapterOptions.checkpointExclude === undefined ? {} : { exclude: adapterOptions.checkpointExclude };
    this.statePrefix = adapterOptions.statePrefix ?? 'state';
  }

  /** The transform's current state (undefined before the first step). */
  get currentState(): S | undefined {
    return this.state;
  }

  /**
   * As `tf.Optimizer.computeGradients`, without its leak when `f` throws: tfjs keeps copies of the
   * tensors each kernel of the forward pass saves for the backward pass, and frees them only after
   * a backward pass, so a loss function that throws (or a layer refusing its input, e.g. a batch
   * without rows) leaked them on every call. They are freed here before the error propagates.
   */
  override computeGradients(f: () => tf.Scalar, varList?: tf.Variable[]): { value: tf.Scalar; grads: tf.NamedTensorMap } {
    try {
      return super.computeGradients(f, varList);
    } catch (error) {
      freeAbandonedTape();
      throw error;
    }
  }

  /** As `tf.Optimizer.minimize`, also reading the loss back when `readsLoss` is set (synchronously: see {@link minimizeAsync}). */
  override minimize(f: () => tf.Scalar, returnCost = false, varList?: tf.Variable[]): tf.Scalar | null {
    this.refuseWhileAsyncStep('minimize');
    if (!this.adapterOptions.readsLoss) return super.minimize(f, returnCost, varList);
    const { value, grads } = this.computeGradients(f, varList);
    return this.stepWithLoss(value, grads, () => value.dataSync()[0] as number, returnCost, varList);
  }

  /**
   * {@link minimize} with the loss read back asynchronously (`await value.data()`) when the
   * optimizer reads it (`readsLoss`: MKOR-H's switch), so a step makes no synchronous read-back:
   * what WebGPU needs (a synchronous read there is slow everywhere and fails on some devices), and
   * it keeps a page responsive on WebGL. Without `readsLoss` it is `minimize`. The step itself is
   * the same, so the weights are the same as with `minimize`. Await each step before the next:
   * `minimize` or `minimizeAsync` called while one is in flight throws (the later forward pass
   * would replace the statistics the pending step captured).
   */
  async minimizeAsync(f: () => tf.Scalar, returnCost = false, varList?: tf.Variable[]): Promise<tf.Scalar | null> {
    this.refuseWhileAsyncStep('minimizeAsync');
    if (!this.adapterOptions.readsLoss) return this.minimize(f, returnCost, varList);
    const { value, grads } = this.computeGradients(f, varList);
    this.asyncStepInFlight = true;
    let loss: number;
    try {
      loss = (await value.data())[0] as number;
    } catch (error) {
      tf.dispose([value, ...Object.values(grads)]);
      throw error;
    } finally {
      this.asyncStepInFlight = false;
    }
    return this.stepWithLoss(value, grads, () => loss, returnCost, varList);
  }

  private refuseWhileAsyncStep(method: string): void {
    if (this.asyncStepInFlight) throw new Error(`${this.getClassName()}.${method}: a minimizeAsync step is in flight; await it before taking the next step`);
  }

  /** The step of `minimize` once the gradients are there: `loss()` read, applied, gradients freed, the cost returned or freed. */
  private stepWithLoss(value: tf.Scalar, grads: tf.NamedTensorMap, loss: () => number, returnCost: boolean, varList?: tf.Variable[]): tf.Scalar | null {
    try {
      const ordered = varList == null ? grads : varList.map((v) => ({ name: v.name, tensor: grads[v.name] as tf.Tensor }));
      this.applyGradientsWithContext(ordered, { loss: loss() });
    } catch (error) {
      value.dispose();
      throw error;
    } finally {
      tf.dispose(Object.values(grads));
    }
    if (returnCost) return value;
    value.dispose();
    return null;
  }

  /** One step: run the transform on the gradients, then `w ← w + u` for every variable. */
  override applyGradients(variableGradients: tf.NamedTensorMap | NamedStateTensor[]): void {
    this.applyGradientsWithContext(variableGradients, {});
  }

  /**
   * {@link applyGradients} with context supplied by the caller (`extras` such as all-reduced
   * statistics from a data-parallel trainer, or the `loss`, which `minimize` passes with
   * `readsLoss`).
   */
  applyGradientsWithContext(
    variableGradients: tf.NamedTensorMap | NamedStateTensor[],
    override: Omit<UpdateContext, 'params'>,
  ): void {
    const where = this.getClassName();
    const gradients: Record<string, tf.Tensor> = {};
    const entries = Array.isArray(variableGradients)
      ? variableGradients.map((g) => [g.name, g.tensor] as const)
      : Object.entries(variableGradients);
    for (const [name, tensor] of entries) if (tensor != null) gradients[name] = tensor;

    const params: Record<string, tf.Variable> = {};
    for (const [name, grad] of Object.entries(gradients)) {
      const variable = tf.engine().registeredVariables[name];
      if (variable === undefined) throw new RangeError(`${where}: no variable named '${name}' is registered`);
      if (grad.shape.join(',') !== variable.shape.join(',')) {
        throw new RangeError(
          `${where}: the gradient of '${name}' has shape [${grad.shape.join(', ')}], the variable [${variable.shape.join(', ')}]`,
        );
      }
      params[name] = variable;
    }
    if (this.state === undefined) this.state = this.initialState(params);
    this.lastParams = params;

    const { loss } = override;
    const context: UpdateContext = {
      ...(override.extras === undefined ? {} : { extras: override.extras }),
      params,
      ...(loss === undefined ? {} : { loss }),
    };
    const result = applyTransform(this.transform, gradients, this.state, context);
    this.state = result.state;
    // model.fit runs each batch inside its own tf.tidy: keep the state alive past it.
    for (const t of tensorsIn(result.state)) tf.keep(t);
    tf.tidy(() => {
      for (const [name, update] of Object.entries(result.updates)) {
        const variable = params[name];
        if (variable !== undefined) variable.assign(tf.add(variable, update));
      }
    });
    // Free the updates, except gradients passed through and updates that are also state (a momentum trace).
    const kept = new Set([...Object.values(gradients), ...tensorsIn(result.state)].map((t) => t.id));
    tf.dispose(Object.values(result.updates).filter((u) => !kept.has(u.id)));
    this.incrementIterations();
  }

  /**
   * The state as named tensors, for checkpoints and `model.save`: `iter` first, then
   * `<prefix>/checkpoint/format` ({@link CHECKPOINT_FORMAT}), `<prefix>/checkpoint/config` (the
   * JSON of {@link getConfig}, a string tensor), the entries a subclass adds
   * ({@link checkpointEntries}), then the state. Every tensor returned stays the optimizer's, as
   * with tfjs's optimizers: the state's own tensors (not copies) until the next step, the others
   * until the next `getWeights`, and all of them until `dispose`. To keep a checkpoint past those,
   * clone it: `(await optimizer.getWeights()).map((w) => ({ name: w.name, tensor: tf.clone(w.tensor) }))`.
   * `setWeights` copies what it keeps.
   */
  override async getWeights(): Promise<NamedStateTensor[]> {
    const iterations = await this.saveIterations();
    const header = [
      { name: checkpointEntryName(this.statePrefix, 'format'), tensor: tf.scalar(CHECKPOINT_FORMAT, 'int32') },
      { name: checkpointEntryName(this.statePrefix, 'config'), tensor: tf.scalar(JSON.stringify(this.getConfig()), 'string') },
      ...this.checkpointEntries().map((e) => ({ name: checkpointEntryName(this.statePrefix, e.name), tensor: e.tensor })),
    ];
    const state = this.state === undefined ? (this.pendingWeights ?? []) : flattenState(this.state, this.statePrefix, this.ioOptions);
    const weights = [iterations, ...header, ...state];
    // The tensors made for this call stay the optimizer's (model.save does not free them).
    const own = new Set([...tensorsIn(this.state), ...(this.pendingWeights ?? []).map((w) => w.tensor)].map((t) => t.id));
    tf.dispose(this.issued);
    this.issued = weights.map((w) => w.tensor).filter((t) => !own.has(t.id));
    return weights;
  }

  /**
   * Restores a state saved by {@link getWeights}. Before anything is touched the checkpoint is
   * checked, and refused with a `RangeError` naming the problem: it must be non-empty, of this
   * format, written by an optimizer of the same configuration (`getConfig`, e.g. the same preset
   * and hyperparameters), and every state entry must be a finite float32 tensor. Then the state
   * is rebuilt: at once when the optimizer has stepped before, else at the next step (when the
   * variables are known), so this works on a fresh optimizer; a checkpoint whose entries do not
   * match the state fails with an error naming the first missing or mismatched entry, and the
   * optimizer keeps the state it had.
   */
  override async setWeights(weightValues: NamedStateTensor[]): Promise<void> {
    const where = `${this.getClassName()}.setWeights`;
    const { state, entries } = this.checkCheckpoint(where, weightValues);
    await this.extractIterations(weightValues.slice(0, 1));
    const pending = state.map((w) => ({ name: w.name, tensor: tf.keep(tf.clone(w.tensor)) }));
    if (this.lastParams !== undefined) {
      // The variables are known: rebuild now, so a mismatch leaves the current state as it was.
      let restored: S;
      try {
        restored = this.restoredState(this.lastParams, pending);
      } finally {
        tf.dispose(pending.map((w) => w.tensor));
      }
      this.disposeState();
      this.state = restored;
    } else {
      this.disposeState();
      this.pendingWeights = pending;
    }
    this.restoreCheckpointEntries(entries);
  }

  /**
   * Entries a subclass adds to every checkpoint (new tensors the caller owns), named relative to
   * `<prefix>/checkpoint/`; given back to {@link restoreCheckpointEntries}. Default none.
   */
  protected checkpointEntries(): NamedStateTensor[] {
    return [];
  }

  /** Receives the entries {@link checkpointEntries} wrote (relative names), after the checkpoint was accepted. */
  protected restoreCheckpointEntries(entries: readonly NamedStateTensor[]): void {
    void entries;
  }

  /** Splits and checks a checkpoint (see {@link setWeights}); throws before anything is touched. */
  private checkCheckpoint(
    where: string,
    weightValues: readonly NamedStateTensor[],
  ): { state: NamedStateTensor[]; entries: NamedStateTensor[] } {
    if (!Array.isArray(weightValues) || weightValues.length === 0) {
      throw new RangeError(`${where}: the checkpoint is empty; pass what getWeights() returned`);
    }
    const disposed = weightValues.find((w) => w.tensor.isDisposed);
    if (disposed !== undefined) {
      throw new RangeError(
        `${where}: checkpoint entry '${disposed.name}' was disposed: getWeights() returns the optimizer's own tensors, ` +
          'which a step, the next getWeights() or dispose() frees; clone them to keep them (tf.clone)',
      );
    }
    const headerPrefix = checkpointEntryName(this.statePrefix, '');
    const byName = new Map(weightValues.slice(1).map((w) => [w.name, w.tensor]));
    const format = byName.get(`${headerPrefix}format`);
    if (format === undefined) {
      throw new RangeError(
        `${where}: the checkpoint has no '${headerPrefix}format' entry: it is not a ${this.getClassName()} checkpoint, or was written before format ${CHECKPOINT_FORMAT} (which cannot be checked and is not read)`,
      );
    }
    const version = format.dataSync()[0];
    if (version !== CHECKPOINT_FORMAT) {
      const why = FORMAT_HISTORY[version as number];
      throw new RangeError(
        `${where}: the checkpoint is of format ${version}; this version reads format ${CHECKPOINT_FORMAT}` +
          (why === undefined ? '' : ` (${why}); continue from the saved model's weights with a fresh optimizer`),
      );
    }
    const config = byName.get(`${headerPrefix}config`);
    const saved = config?.dtype === 'string' ? (JSON.parse(String(config.dataSync()[0])) as tf.serialization.ConfigDict) : undefined;
    if (saved === undefined) throw new RangeError(`${where}: the checkpoint has no '${headerPrefix}config' entry`);
    const own = JSON.parse(JSON.stringify(this.getConfig())) as tf.serialization.ConfigDict;
    const differing = [...new Set([...Object.keys(own), ...Object.keys(saved)])].filter(
      (key) => JSON.stringify(own[key]) !== JSON.stringify(saved[key]),
    );
    if (differing.length > 0) {
      const list = differing.map((key) => `${key}: ${JSON.stringify(saved[key])} in the checkpoint, ${JSON.stringify(own[key])} here`).join('; ');
      throw new RangeError(`${where}: the checkpoint was written by an optimizer configured differently (${list})`);
    }
    const state: NamedStateTensor[] = [];
    const entries: NamedStateTensor[] = [];
    for (const w of weightValues.slice(1)) {
      if (w.name.startsWith(headerPrefix)) {
        entries.push({ name: w.name.slice(headerPrefix.length), tensor: w.tensor });
        continue;
      }
      if (w.tensor.dtype !== 'float32') {
        throw new RangeError(`${where}: checkpoint entry '${w.name}' is ${w.tensor.dtype}, expected float32`);
      }
      if (!allFinite(w.tensor)) throw new RangeError(`${where}: checkpoint entry '${w.name}' holds NaN or Inf`);
      state.push(w);
    }
    return { state, entries: entries.filter((e) => e.name !== 'format' && e.name !== 'config') };
  }

  /** The adapter has no hyperparameters of its own; subclasses report theirs. */
  override getConfig(): tf.serialization.ConfigDict {
    return {};
  }

  /** Frees the state. */
  override dispose(): void {
    this.disposeState();
    tf.dispose(this.issued);
    this.issued = [];
    this.lastParams = undefined;
    super.dispose();
  }

  private disposeState(): void {
    if (this.state !== undefined) tf.dispose(flattenState(this.state, '', this.ioOptions).map((w) => w.tensor));
    this.state = undefined;
    tf.dispose(this.pendingWeights?.map((w) => w.tensor) ?? []);
    this.pendingWeights = undefined;
  }

  private initialState(params: Record<string, tf.Variable>): S {
    const pending = this.pendingWeights;
    if (pending === undefined) return this.transform.init(params);
    // On a mismatch this throws and keeps the checkpoint pending: nothing is lost, and no step
    // runs from a fresh state by accident.
    const restored = this.restoredState(params, pending);
    tf.dispose(pending.map((w) => w.tensor));
    this.pendingWeights = undefined;
    return restored;
  }

  /**
   * The name a checkpoint entry has in this optimizer, given its name when saved. Default the
   * same; a subclass that knows the model maps saved variable names to the current ones (a model
   * loaded in the same process gets new unique variable names).
   */
  protected checkpointEntryName(savedName: string): string {
    return savedName;
  }

  /** The state rebuilt from checkpoint entries, on a fresh state of these parameters as the template. */
  private restoredState(params: Record<string, tf.Variable>, weights: readonly NamedStateTensor[]): S {
    const fresh = this.transform.init(params);
    try {
      const renamed = weights.map((w) => ({ name: this.checkpointEntryName(w.name), tensor: w.tensor }));
      return restoreState(fresh, renamed, this.statePrefix, this.ioOptions);
    } finally {
      tf.dispose(flattenState(fresh, '', this.ioOptions).map((w) => w.tensor));
    }
  }
}

tf.serialization.registerClass(TransformOptimizer);
