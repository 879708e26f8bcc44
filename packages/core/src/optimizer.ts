import * as tf from '@tensorflow/tfjs-core';

import { applyTransform, tensorsIn } from './memory';
import { type NamedStateTensor, flattenState, restoreState } from './state-io';
import type { Transform, UpdateContext } from './transform';

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
 * restores through `getWeights`/`setWeights`. Subclasses add per-step context with
 * {@link TransformOptimizer.stepContext}.
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
  private lastLoss: number | undefined;
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

  /** Per-step context a subclass adds (e.g. captured statistics); `params` and `loss` are set here. */
  protected stepContext(): Omit<UpdateContext, 'params' | 'loss'> {
    return {};
  }

  /** As `tf.Optimizer.minimize`, also reading the loss back when `readsLoss` is set. */
  override minimize(f: () => tf.Scalar, returnCost = false, varList?: tf.Variable[]): tf.Scalar | null {
    if (!this.adapterOptions.readsLoss) return super.minimize(f, returnCost, varList);
    const { value, grads } = this.computeGradients(f, varList);
    this.lastLoss = value.dataSync()[0];
    try {
      this.applyGradients(varList == null ? grads : varList.map((v) => ({ name: v.name, tensor: grads[v.name] as tf.Tensor })));
    } finally {
      this.lastLoss = undefined;
      tf.dispose(grads);
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
   * {@link applyGradients} with context supplied by the caller: its `extras` entries replace
   * those of {@link stepContext} (e.g. a data-parallel trainer passes all-reduced statistics),
   * and its `loss` is used when given.
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

    const own = this.stepContext();
    const loss = override.loss ?? this.lastLoss;
    const context: UpdateContext = {
      ...own,
      extras: { ...own.extras, ...override.extras },
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
    const inputs = new Set(Object.values(gradients).map((g) => g.id));
    tf.dispose(Object.values(result.updates).filter((u) => !inputs.has(u.id)));
    this.incrementIterations();
  }

  /**
   * The state as named tensors (`iter` first), for checkpoints and `model.save`. The state's own
   * tensors are returned, not copies (as tfjs's optimizers do): they stay valid until the next step
   * or `dispose`; `setWeights` copies what it keeps.
   */
  override async getWeights(): Promise<NamedStateTensor[]> {
    const iterations = await this.saveIterations();
    if (this.state === undefined) return [iterations, ...(this.pendingWeights ?? [])];
    return [iterations, ...flattenState(this.state, this.statePrefix, this.ioOptions)];
  }

  /**
   * Restores a state saved by {@link getWeights}. The state is rebuilt at the next step (when the
   * variables are known), so this works on a fresh optimizer; a checkpoint that does not match
   * fails then with an error naming the first missing or mismatched entry.
   */
  override async setWeights(weightValues: NamedStateTensor[]): Promise<void> {
    const rest = await this.extractIterations(weightValues);
    this.disposeState();
    this.pendingWeights = rest.map((w) => ({ name: w.name, tensor: tf.keep(tf.clone(w.tensor)) }));
  }

  /** The adapter has no hyperparameters of its own; subclasses report theirs. */
  override getConfig(): tf.serialization.ConfigDict {
    return {};
  }

  /** Frees the state. */
  override dispose(): void {
    this.disposeState();
    super.dispose();
  }

  private disposeState(): void {
    if (this.state !== undefined) tf.dispose(flattenState(this.state, '', this.ioOptions).map((w) => w.tensor));
    this.state = undefined;
    tf.dispose(this.pendingWeights?.map((w) => w.tensor) ?? []);
    this.pendingWeights = undefined;
  }

  private initialState(params: Record<string, tf.Variable>): S {
    const fresh = this.transform.init(params);
    const pending = this.pendingWeights;
    if (pending === undefined) return fresh;
    try {
      // On a mismatch this throws and keeps the checkpoint pending: nothing is lost, and no step
      // runs from a fresh state by accident.
      const restored = restoreState(fresh, pending, this.statePrefix, this.ioOptions);
      tf.dispose(pending.map((w) => w.tensor));
      this.pendingWeights = undefined;
      return restored;
    } finally {
      tf.dispose(flattenState(fresh, '', this.ioOptions).map((w) => w.tensor));
    }
  }
}

tf.serialization.registerClass(TransformOptimizer);
