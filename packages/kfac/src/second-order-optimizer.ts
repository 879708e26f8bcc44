import { CaptureOptimizer, type CaptureRegistry, type PrepareModelOptions, type PreparableModel } from '@mkor/capture';
import { type BackendOptions, type ResolvedBackend, backendFromConfig, resolveBackend } from '@mkor/first-order';
import type * as tf from '@tensorflow/tfjs-core';

import type {
  ResolvedSecondOrderOptions,
  SecondOrderOptions,
  SecondOrderState,
  SecondOrderTransform,
  SecondOrderTransformOptions,
} from './second-order-parts';

/**
 * The options of a {@link SecondOrderOptimizer}: the method's (`O`), the backend or the default
 * Adam's learning rate (`@mkor/first-order`'s `BackendOptions`), and the widest layer
 * preconditioned when a model is prepared (`maxDim` of `@mkor/capture`'s `PrepareModelOptions`).
 */
export type SecondOrderOptimizerOptions<O extends SecondOrderOptions> = O & BackendOptions & Pick<PrepareModelOptions, 'maxDim'>;

/** What a {@link SecondOrderOptimizer} needs to know about its method (KFAC, Eva). */
export interface SecondOrderMethod<O extends SecondOrderOptions, R extends ResolvedSecondOrderOptions, P extends { readonly metrics: unknown }> {
  /** The prefix of the state's names in `getWeights` (`'kfac'`). */
  readonly statePrefix: string;
  /** Whether the statistics must carry covariances (`prepareModel(model, { covariance: true })`). Default false. */
  readonly covariance?: boolean;
  /** Checks the method's options and fills in the defaults, naming `where` (the optimizer's class) in errors. */
  readonly resolve: (options: O, where: string) => R;
  /** The composed transform: the method's preconditioner chained with the backend. */
  readonly compose: (options: O & SecondOrderTransformOptions) => SecondOrderTransform<P>;
  /** The method's hyperparameters for `getConfig`, from the resolved options. */
  readonly config: (resolved: R) => tf.serialization.ConfigDict;
}

/**
 * The base of the `tf.Optimizer`s of the second-order methods of this package's kind
 * (`KfacOptimizer`, `EvaOptimizer`, each with its own `className`): a `CaptureOptimizer` whose
 * transform is the method's preconditioner chained with a first-order backend.
 *
 * The constructor checks the options before it touches the model, naming the class's
 * `className` in errors: the backend options with `resolveBackend` of `@mkor/first-order` (the
 * learning rate, also `lr` of the KL-clip, and the default Adam backend), then the method's with
 * `method.resolve`. Given a model, it prepares it with `{ covariance: method.covariance, maxDim }`
 * and undoes that on `dispose`; given a registry, it uses it. The state saves and restores
 * through `getWeights`/`setWeights` (the metrics are left out), and `getConfig` reports
 * `method.config(resolved)`, the learning rate, `backend: 'adam' | 'custom'` and `maxDim` (or
 * null).
 */
export abstract class SecondOrderOptimizer<
  O extends SecondOrderOptions,
  R extends ResolvedSecondOrderOptions,
  P extends { readonly metrics: unknown },
> extends CaptureOptimizer<SecondOrderState<P>> {
  /**
   * Rebuilds an optimizer from its `getConfig`, as `tf.loadLayersModel` does for a model saved with
   * `includeOptimizer: true`: it has no model until `attach(model)` (see `CaptureOptimizer`), and
   * `loadLayersModel` has restored its state already. A backend of your own cannot be held by a
   * configuration: such an optimizer says so at its first step.
   */
  static override fromConfig<T extends tf.serialization.Serializable>(
    cls: tf.serialization.SerializableConstructor<T>,
    config: tf.serialization.ConfigDict,
  ): T {
    // tfjs's deserialisation adds customObjects, which is no option.
    const { backend, learningRate, maxDim, customObjects: _customObjects, ...methodOptions } = config;
    const backendConfig = backend as ResolvedBackend['config']['backend'];
    const where = (cls as unknown as { className: string }).className;
    const options = {
      ...methodOptions,
      backend: backendFromConfig(where, backendConfig),
      // A named backend carries its learning rate; for one of your own it was given alongside.
      ...(backendConfig === 'custom' && typeof learningRate === 'number' ? { learningRate } : {}),
      ...(typeof maxDim === 'number' ? { maxDim } : {}),
    };
    return new (cls as unknown as new (target: undefined, options: object) => T)(undefined, options);
  }

  private readonly composed: SecondOrderTransform<P>;

  /**
   * @param target - the model to train (prepared here), a capture registry, or `undefined` for an
   *   optimizer that gets its model later with `attach(model)`.
   */
  protected constructor(target: PreparableModel | CaptureRegistry | undefined, options: SecondOrderOptimizerOptions<O>, method: SecondOrderMethod<O, R, P>) {
    // Errors name the optimizer's class, e.g. 'KfacOptimizer: learningRate must be a positive finite number, got 0'.
    const where = new.target.className;
    const { backend, learningRate, maxDim, ...methodOptions } = options;
    const firstOrder = resolveBackend(where, { backend, learningRate }, { methodUsesLearningRate: true });
    const preconditionerOptions = { ...methodOptions, learningRate: firstOrder.learningRate } as unknown as O;
    const resolved = method.resolve(preconditionerOptions, where);
    super(
      target,
      { covariance: method.covariance ?? false, maxDim },
      (capture) => method.compose({ ...preconditionerOptions, layers: () => capture.secondOrder, backend: firstOrder.backend }),
      {
        statePrefix: method.statePrefix,
        checkpointExclude: (path) => path.endsWith('/metrics'),
        config: { ...method.config(resolved), ...firstOrder.config, maxDim: maxDim ?? null },
      },
    );
    this.composed = this.transform as SecondOrderTransform<P>;
  }

  /** The latest step's metrics, or null (before the first step, or without `collectMetrics`). */
  get metrics(): P['metrics'] {
    const state = this.currentState;
    return state === undefined ? null : this.composed.metrics(state);
  }

  /** Steps refused: their gradients held NaN or Inf, or their result would have (see `refusedResults`). */
  get skippedSteps(): number {
    return this.currentState?.skippedSteps ?? 0;
  }

  /**
   * Steps refused although their gradients were finite, because they would have written NaN or
   * Inf into the weights or the state (e.g. a KL-clip factor or Adam's second moment overflowing
   * on a huge but finite batch); included in `skippedSteps`.
   */
  get refusedResults(): number {
    return this.currentState?.refusedResults ?? 0;
  }

  /** The preconditioner's part of the state, or undefined before the first step. */
  protected get preconditionerState(): P | undefined {
    const state = this.currentState;
    return state === undefined ? undefined : this.composed.preconditionerState(state);
  }
}
