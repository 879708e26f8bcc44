import { CaptureOptimizer, type CaptureRegistry, type PrepareModelOptions, type PreparableModel } from '@mkor/capture';
import { checkKnownOptions, requireFloat32Textures, skipCounts, skipCountsAsync } from '@mkor/core';
import { type BackendOptions, type ResolvedBackend, backendFromConfig, notRebuildable, resolveBackend } from '@mkor/first-order';
import type { SwitchRule } from '@mkor/hybrid-switch';
import * as tf from '@tensorflow/tfjs-core';

import { type BlockChoice, type CurvatureBlock, asBlockChoice } from './block';
import { type HybridOptions, type SecondOrderState, type SecondOrderTransform, withBackend } from './compose';
import { OPTIMIZER_OWN_OPTION_KEYS, RENAMED_OPTIONS, SECOND_ORDER_OPTION_KEYS, type SecondOrderOptions, resolveSecondOrderOptions } from './options';
import { type BlockPreconditionerState, type SecondOrderStepMetrics, type SecondOrderTotals, blockPreconditioner, readTotals, readTotalsAsync } from './preconditioner';
import type { UpdateScaling } from './scaling';

/** Options of a {@link SecondOrderOptimizer}: the loop's, the backend, the hybrid switch, `maxDim`, and (for the class itself) the blocks. */
export interface SecondOrderOptimizerOptions extends Omit<SecondOrderOptions, 'learningRate'>, BackendOptions, Pick<PrepareModelOptions, 'maxDim'> {
  /**
   * The learning rate of the default Adam backend, also `lr` of the KL-clip. Default 1e-3. A
   * backend from `@mkor/first-order` carries its own (giving this too is refused); with a backend
   * transform of your own, give that backend's rate here when the KL-clip needs it.
   */
  readonly learningRate?: number;
  /** The hybrid switch (MKOR-H, or the same for any method). Without a `clock`, wall time is read with `performance.now()`. */
  readonly hybrid?: HybridOptions;
  /** The blocks (`SecondOrderOptimizer` itself; the methods' optimizers build their own from their options). */
  readonly blocks?: CurvatureBlock | BlockChoice;
}

/** What a method built on {@link SecondOrderOptimizer} (MKOR, KFAC, Eva) makes of its own options. */
export interface SecondOrderMethod {
  /** The prefix of the state's names in `getWeights`, e.g. `'mkor'`. */
  readonly statePrefix: string;
  /** The method's blocks. */
  readonly blocks: CurvatureBlock | BlockChoice;
  /** The update scaling when none is given. */
  readonly defaultScaling: UpdateScaling;
  /** Loop options the method sets unless the user gives them (e.g. MKOR's reference preset's `scaling: 'summed-norms'`). */
  readonly loopDefaults?: Omit<SecondOrderOptions, 'learningRate'>;
  /** Clamp of the captured rows (`prepareModel`'s `rowClamp`), e.g. the authors' ±100 of MKOR's reference preset. */
  readonly rowClamp?: number;
  /** The method's resolved hyperparameters, for `getConfig` (schedules are reported as `'custom'`). */
  readonly config: tf.serialization.ConfigDict;
}

/**
 * Builds a {@link SecondOrderMethod} from the options that are not the adapter's, checking them
 * (unknown options refused) and naming `where`, the optimizer's class, in errors.
 */
export type SecondOrderMethodFactory = (where: string, methodOptions: Readonly<Record<string, unknown>>) => SecondOrderMethod;

/** Keys of `getConfig` that `fromConfig` handles itself rather than passing on. */
const CONFIG_ONLY_KEYS = new Set(['backend', 'learningRate', 'hybrid', 'maxDim', 'blocks', 'customObjects']);

/** Schedules cannot be saved: `getConfig` reports them as `'custom'`. */
function configValue(value: unknown): tf.serialization.ConfigDictValue {
  return typeof value === 'function' ? 'custom' : (value as tf.serialization.ConfigDictValue);
}

/** What stands in for what a saved configuration cannot hold: each throws {@link notRebuildable}'s error when first used. */
function unsavedRule(where: string): SwitchRule<null> {
  return {
    init: () => {
      throw notRebuildable(where, 'the hybrid switch rule');
    },
    observe: () => ({ state: null, switchNow: false }),
  };
}

function unsavedBlock(where: string): CurvatureBlock {
  return {
    kind: 'custom',
    needsCovariance: false,
    events: [],
    init: () => {
      throw notRebuildable(where, 'blocks of your own');
    },
    absorb: (state) => ({ state, consumed: false }),
    precondition: (_state, gradient) => gradient,
  };
}

function unsavedSchedule(where: string, name: string): () => number {
  return () => {
    throw notRebuildable(where, `the schedule of ${name}`);
  };
}

/** The method of `SecondOrderOptimizer` itself: the blocks given. */
function givenBlocks(where: string, methodOptions: Readonly<Record<string, unknown>>): SecondOrderMethod {
  checkKnownOptions(where, methodOptions, ['blocks', ...OPTIMIZER_OWN_OPTION_KEYS, ...SECOND_ORDER_OPTION_KEYS], RENAMED_OPTIONS);
  if (methodOptions.blocks === undefined) throw new TypeError(`${where}: blocks is required, e.g. { blocks: mkorBlock() } or blocksByLayer(...)`);
  return { statePrefix: 'secondOrder', blocks: methodOptions.blocks as CurvatureBlock | BlockChoice, defaultScaling: 'frobenius', config: { blocks: 'custom' } };
}

/**
 * The one `tf.Optimizer` of every second-order method (`model.compile({ optimizer })` +
 * `model.fit`, or `optimizer.minimize(loss)`): a `CaptureOptimizer` whose transform is the
 * method's blocks in the layer loop (`blockPreconditioner`), chained with a first-order backend
 * (default Adam) behind the NaN guard, and with `hybrid` the switch to first-order steps.
 * `MkorOptimizer`, `KfacOptimizer` and `EvaOptimizer` are this with their blocks; use it directly
 * with blocks of your own, or a choice per layer:
 *
 * ```ts
 * const optimizer = new SecondOrderOptimizer(model, { blocks: blocksByLayer([{ match: (l) => l.foldedInputDim <= 64, block: kfacBlock() }], mkorBlock()) });
 * ```
 *
 * The constructor checks every option before it touches the model (unknown ones refused), naming
 * the class's `className` in errors; errors of later steps name it too. Given a model, it prepares
 * it with `prepareModel` (with covariances when a block needs them) and undoes that on `dispose`;
 * given a registry, it uses it; given `undefined`, it waits for `attach(model)`. The state saves and
 * restores through `getWeights`/`setWeights` (metrics left out); `getConfig` reports the method's
 * hyperparameters, the loop's, the backend's and `maxDim`, and `fromConfig` rebuilds from them.
 */
export class SecondOrderOptimizer extends CaptureOptimizer<SecondOrderState> {
  /** The name tfjs serialisation knows this class by. */
  static override get className(): string {
    return 'SecondOrderOptimizer';
  }

  /**
   * Rebuilds an optimizer from its `getConfig`, as `tf.loadLayersModel` does for a model saved with
   * `includeOptimizer: true`: it has no model until `attach(model)`, and `loadLayersModel` has
   * restored its state already. What a configuration cannot hold (a backend transform, blocks or a
   * switch rule of your own, a schedule) is replaced by a stand-in that says so at the first step.
   */
  static override fromConfig<T extends tf.serialization.Serializable>(
    cls: tf.serialization.SerializableConstructor<T>,
    config: tf.serialization.ConfigDict,
  ): T {
    const where = (cls as unknown as { className: string }).className;
    const { backend, learningRate, maxDim, hybrid, blocks } = config;
    const backendConfig = backend as ResolvedBackend['config']['backend'];
    const methodOptions = Object.fromEntries(
      Object.entries(config)
        .filter(([key]) => !CONFIG_ONLY_KEYS.has(key))
        .map(([key, value]) => [key, value === 'custom' ? unsavedSchedule(where, key) : value]),
    );
    const options = {
      ...methodOptions,
      backend: backendFromConfig(where, backendConfig),
      // A named backend carries its learning rate; for one of your own it was given alongside.
      ...(backendConfig === 'custom' && typeof learningRate === 'number' ? { learningRate } : {}),
      ...(typeof maxDim === 'number' ? { maxDim } : {}),
      ...(hybrid === null || hybrid === undefined ? {} : { hybrid: { rule: unsavedRule(where) } }),
      ...(blocks === 'custom' ? { blocks: unsavedBlock(where) } : {}),
    };
    return new (cls as unknown as new (target: undefined, options: object) => T)(undefined, options);
  }

  private readonly composed: SecondOrderTransform;

  /**
   * @param target - the model to train (prepared here), a capture registry, or `undefined` for an
   *   optimizer that gets its model later with `attach(model)`.
   * @param options - the loop's, the backend's, `hybrid`, `maxDim`, and the method's own options.
   * @param method - how a method's optimizer turns its own options into blocks (the methods' classes
   *   pass theirs); without it, `options.blocks` is required.
   */
  constructor(
    target: PreparableModel | CaptureRegistry | undefined,
    options: SecondOrderOptimizerOptions = {},
    method: SecondOrderMethodFactory = givenBlocks,
  ) {
    const where = new.target.className;
    if (options === null || typeof options !== 'object') throw new TypeError(`${where}: options must be an object, got ${String(options)}`);
    requireFloat32Textures(where);
    const { backend, learningRate, maxDim, hybrid, scaling, klClip, gradientScale, collectMetrics, decisions, ...methodOptions } = options as SecondOrderOptimizerOptions &
      Readonly<Record<string, unknown>>;
    const described = method(where, methodOptions);
    const given = Object.fromEntries(Object.entries({ scaling, klClip, gradientScale, collectMetrics, decisions }).filter(([, value]) => value !== undefined));
    const loopOptions: Omit<SecondOrderOptions, 'learningRate'> = { ...described.loopDefaults, ...given };
    const firstOrder = resolveBackend(where, { backend, learningRate }, { methodUsesLearningRate: (loopOptions.scaling ?? described.defaultScaling) === 'kl-clip' });
    const loop = resolveSecondOrderOptions(where, { ...loopOptions, learningRate: firstOrder.learningRate }, described.defaultScaling);
    const blocks = asBlockChoice(where, described.blocks);
    const hybridOptions: HybridOptions | undefined = hybrid === undefined ? undefined : { clock: () => performance.now() / 1000, ...hybrid };
    super(
      target,
      {
        covariance: blocks.blocks.some((block) => block.needsCovariance),
        maxDim,
        ...(described.rowClamp === undefined ? {} : { rowClamp: described.rowClamp }),
      },
      (capture) =>
        withBackend(
          where,
          // Read at the first step: createCapture's layers register during the first forward pass.
          blockPreconditioner(() => capture.secondOrder, { ...loopOptions, learningRate: firstOrder.learningRate, blocks }, where, described.defaultScaling),
          { backend: firstOrder.backend, decisions: loop.decisions, ...(hybridOptions === undefined ? {} : { hybrid: hybridOptions }) },
        ),
      {
        statePrefix: described.statePrefix,
        checkpointExclude: (path) => path.endsWith('/metrics'),
        readsLoss: hybrid !== undefined,
        config: {
          ...Object.fromEntries(Object.entries(described.config).map(([key, value]) => [key, configValue(value)])),
          scaling: loop.scaling,
          klClip: loop.klClip,
          gradientScale: loop.gradientScale,
          collectMetrics: loop.collectMetrics,
          decisions: loop.decisions,
          ...firstOrder.config,
          hybrid: hybrid === undefined ? null : 'custom',
          maxDim: maxDim ?? null,
        },
      },
    );
    this.composed = this.transform as SecondOrderTransform;
  }

  /** The latest second-order step's metrics (refreshes, events, scale factors, timings), or null. */
  get metrics(): SecondOrderStepMetrics | null {
    const state = this.currentState;
    return state === undefined ? null : this.composed.metrics(state);
  }

  /** The step at which the hybrid switch went to first-order steps, or −1. */
  get switchedAtStep(): number {
    const state = this.currentState;
    return state === undefined ? -1 : this.composed.switchedAtStep(state);
  }

  /**
   * Steps refused: their gradients held NaN or Inf, or their result would have (see
   * `refusedResults`). With `decisions: 'device'` reading it reads the device's count back.
   */
  get skippedSteps(): number {
    const state = this.currentState;
    return state === undefined ? 0 : skipCounts(state).skippedSteps;
  }

  /**
   * Steps refused although their gradients were finite, because they would have written NaN or Inf
   * into the weights or the state (e.g. Adam's second moment overflowing on a huge but finite
   * batch); included in `skippedSteps`.
   */
  get refusedResults(): number {
    const state = this.currentState;
    return state === undefined ? 0 : skipCounts(state).refusedResults;
  }

  /**
   * Totals since the start: refreshes and events (see `SecondOrderTotals`), and refused steps. With
   * `decisions: 'device'` reading them reads the device's counts back (one or two read-backs).
   */
  get totals(): SecondOrderOptimizerTotals {
    const { preconditioner, state } = this.countedStates();
    return withCounts(preconditioner === null ? NO_TOTALS : readTotals(preconditioner), state === undefined ? NO_COUNTS : skipCounts(state));
  }

  /**
   * {@link totals} read with asynchronous read-backs (`await tensor.data()`, none synchronous): on
   * webgpu, where a synchronous read is slow everywhere and fails on some devices, read the
   * totals of `decisions: 'device'` this way.
   */
  async readTotals(): Promise<SecondOrderOptimizerTotals> {
    const { preconditioner, state } = this.countedStates();
    const [totals, counts] = await Promise.all([
      preconditioner === null ? NO_TOTALS : readTotalsAsync(preconditioner),
      state === undefined ? NO_COUNTS : skipCountsAsync(state),
    ]);
    return withCounts(totals, counts);
  }

  /** The states the totals are counted in: the guard's (the whole state) and the layer loop's. */
  private countedStates(): { state: SecondOrderState | undefined; preconditioner: BlockPreconditionerState | null } {
    const state = this.currentState;
    return { state, preconditioner: state === undefined ? null : this.composed.preconditionerState(state) };
  }
}

/** {@link SecondOrderOptimizer}'s totals: the layer loop's, and the steps its guard refused. */
export interface SecondOrderOptimizerTotals extends SecondOrderTotals {
  readonly skippedSteps: number;
  readonly refusedResults: number;
}

const NO_TOTALS: SecondOrderTotals = { refreshes: 0, events: {} };
const NO_COUNTS = { skippedSteps: 0, refusedResults: 0 };

function withCounts(totals: SecondOrderTotals, counts: { readonly skippedSteps: number; readonly refusedResults: number }): SecondOrderOptimizerTotals {
  return { ...totals, skippedSteps: counts.skippedSteps, refusedResults: counts.refusedResults };
}

tf.serialization.registerClass(SecondOrderOptimizer);
