import { TransportError, WIRE_PRECISIONS, bucketedAllReduce, checkTimeout } from '@mkor/allreduce';
import type { Transport, WirePrecision } from '@mkor/allreduce';
import { type CaptureRegistry, type CovarianceStatistics, type LayerStatistics, extrasWithStatistics } from '@mkor/capture';
import { type UpdateContext, checkNumber, checkOneOf } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';

/**
 * The smallest bucket `bucketedAllReduce` accepts: its 32-number layout check twice over, in
 * bytes (see `@mkor/allreduce`).
 */
const MIN_BUCKET_BYTES = 256;

/**
 * Where {@link DataParallelTrainer} reads the statistics it all-reduces: which layers are
 * second-order, and each one's latest statistics. A `CaptureRegistry` of `@mkor/capture` is one
 * (`prepareModel`, `createCapture`, or a second-order optimizer's `capture`).
 */
export type StatisticsSource = Pick<CaptureRegistry, 'secondOrder' | 'statistics'>;

/**
 * What {@link DataParallelTrainer} needs of an optimizer: `@mkor/core`'s `TransformOptimizer`
 * (`computeGradients` from `tf.Optimizer`, and `applyGradientsWithContext`) and, for a
 * second-order optimizer such as `MkorOptimizer`, the `capture` registry whose statistics the
 * optimizer reads (the trainer's default {@link DataParallelTrainerOptions.statistics}).
 */
export interface DataParallelOptimizer {
  computeGradients(f: () => tf.Scalar, varList?: tf.Variable[]): { value: tf.Scalar; grads: tf.NamedTensorMap };
  applyGradientsWithContext(variableGradients: tf.NamedTensorMap, context: Omit<UpdateContext, 'params'>): void;
  /** Present on second-order optimizers: which layers are second-order, and their statistics. */
  readonly capture?: StatisticsSource;
}

/** Options of {@link DataParallelTrainer}. Every rank must pass equivalent values. */
export interface DataParallelTrainerOptions {
  /** This rank's optimizer (an `MkorOptimizer`, a KFAC optimizer, or any `TransformOptimizer`). */
  readonly optimizer: DataParallelOptimizer;
  /** This rank's member of the group (`@mkor/allreduce` or `@mkor/mpi`). */
  readonly transport: Transport;
  /**
   * Where the statistics to all-reduce come from (e.g. `optimizer.capture`, or a registry of
   * `prepareModel` / `createCapture` that a custom optimizer reads through `statisticsOf`): each
   * step, the fresh statistics of its second-order layers are averaged across ranks and handed
   * to the optimizer as `context.extras.statistics`, keyed by layer name. Default:
   * `optimizer.capture` when the optimizer has one; else none, and only the gradients and the
   * loss are averaged.
   */
  readonly statistics?: StatisticsSource;
  /**
   * This replica's trainable variables, in the same order on every rank: they are matched across
   * ranks by position, not by name (tfjs names variables uniquely per process, so replicas in one
   * process have different names). Default: every trainable variable registered with the engine
   * when the trainer first needs them, in registration order — right for one replica per process.
   */
  readonly variables?: readonly tf.Variable[];
  /**
   * Wire precision of the statistics vectors (`a`, `g`, covariances). Gradients and the loss
   * always travel in float32. `'float16'` halves the statistics' bytes (MKOR's `d` numbers per
   * layer instead of `2d` in float32 bytes); each contribution is rounded to float16 once
   * (relative error ≤ 2⁻¹¹). Default `'float32'`.
   */
  readonly precision?: WirePrecision;
  /** The most bytes per message (see `bucketedAllReduce`); default that of `@mkor/allreduce` (4 MiB). */
  readonly bucketBytes?: number;
  /** Milliseconds each collective waits for the other ranks; default the transport's. */
  readonly timeoutMs?: number;
}

/** The statistics of one second-order layer as read on this rank for one step. */
interface LocalLayerStatistics {
  /** The layer's position in the statistics source's `secondOrder`, its name on the wire. */
  readonly index: number;
  readonly name: string;
  readonly statistics: LayerStatistics;
}

/**
 * Synchronous data-parallel training over any `@mkor/allreduce` transport. Every rank holds a
 * replica of the model and its own optimizer, computes the loss and gradients on its shard of the
 * batch, and {@link DataParallelTrainer.step} all-reduces (mean) what the optimizer consumes
 * before the optimizer steps:
 *
 * - the gradients, `∇W = (1/N) Σ_r ∇W_r`, and the loss;
 * - with a statistics source ({@link DataParallelTrainerOptions.statistics}, by default a
 *   second-order optimizer's `capture`), the fresh statistics of its second-order layers —
 *   MKOR's rank-1 vectors (Algorithm 1, step 2: `a, g ← AllReduce_mean(a, g)`) and, when
 *   captured, KFAC's covariances `E[aaᵀ]`, `E[ggᵀ]` — while `rows` and `samples` stay this rank's.
 *
 * Everything travels in few bucketed messages (one per `bucketBytes`, two when the statistics
 * use float16). With a mean-reduced loss and equal shards of B/N rows, N ranks then follow the
 * trajectory of one process with batch B, to rounding: the mean of the shards' gradients and of
 * their `a` are the full batch's, and with `gradientScale: 'sum'` MKOR folds `n·g` with the
 * local `n = B/N` into `L⁻¹`, where the mean over ranks of `g` is `N·g_full`, so
 * `n·g = B·g_full`, exactly what one process with batch B folds in (see the package docs).
 *
 * Communication is asynchronous, so `step` runs outside any `tf.tidy`. Every rank must call the
 * same methods in the same order; a rank that fails or stops calling makes the others' calls
 * reject once the transport's timeout passes (sooner when the failing rank closes its
 * transport or, under `mpirun`, exits).
 */
export class DataParallelTrainer {
  /** This rank's optimizer. */
  readonly optimizer: DataParallelOptimizer;
  /** This rank's transport. */
  readonly transport: Transport;
  /** The wire precision of the statistics vectors. */
  readonly precision: WirePrecision;
  /** Where the statistics come from ({@link DataParallelTrainerOptions.statistics}); undefined: none. */
  readonly statistics: StatisticsSource | undefined;
  readonly #bucketBytes: number | undefined;
  readonly #timeoutMs: number | undefined;
  #variables: readonly tf.Variable[] | undefined;
  /** The `step` of each layer's statistics last reduced, to tell fresh statistics from stale. */
  readonly #reducedSteps = new Map<string, number>();
  #steps = 0;
  /** Why a step failed on this rank; set, every later step is refused (the ranks are out of step). */
  #failure: string | undefined;

  constructor(options: DataParallelTrainerOptions) {
    const where = 'DataParallelTrainer';
    if (options === null || typeof options !== 'object') {
      throw new TypeError(`${where}: expected options { optimizer, transport, ... }, got ${String(options)}`);
    }
    const { optimizer, transport } = options;
    if (
      optimizer === null ||
      typeof optimizer !== 'object' ||
      typeof optimizer.computeGradients !== 'function' ||
      typeof optimizer.applyGradientsWithContext !== 'function'
    ) {
      throw new TypeError(
        `${where}: optimizer must have computeGradients and applyGradientsWithContext (a TransformOptimizer from @mkor/core)`,
      );
    }
    if (
      transport === null ||
      typeof transport !== 'object' ||
      typeof transport.allReduce !== 'function' ||
      typeof transport.broadcast !== 'function'
    ) {
      throw new TypeError(`${where}: transport must be a Transport from @mkor/allreduce (allReduce, broadcast, ...)`);
    }
    this.optimizer = optimizer;
    this.transport = transport;
    this.statistics =
      options.statistics !== undefined
        ? checkStatisticsSource(where, 'statistics', options.statistics)
        : optimizer.capture === undefined
          ? undefined
          : checkStatisticsSource(where, 'optimizer.capture (the default statistics source)', optimizer.capture);
    this.precision = checkOneOf(where, 'precision', options.precision ?? 'float32', WIRE_PRECISIONS);
    if (options.bucketBytes !== undefined) {
      const bytes = checkNumber(where, 'bucketBytes', options.bucketBytes, { min: MIN_BUCKET_BYTES, integer: true });
      if (bytes % 4 !== 0) throw new RangeError(`${where}: bucketBytes must be a multiple of 4, got ${bytes}`);
    }
    this.#bucketBytes = options.bucketBytes;
    this.#timeoutMs = options.timeoutMs === undefined ? undefined : checkTimeout(where, options.timeoutMs);
    if (options.variables !== undefined) this.#variables = checkVariables(where, options.variables);
  }

  /** This rank, in `[0, worldSize)`. */
  get rank(): number {
    return this.transport.rank;
  }

  /** The number of ranks. */
  get worldSize(): number {
    return this.transport.worldSize;
  }

  /** Steps completed by {@link DataParallelTrainer.step}. */
  get steps(): number {
    return this.#steps;
  }

  /**
   * Broadcasts rank 0's values of the variables to every rank and assigns them, so that all
   * replicas start identical (call it once, before the first step, on every rank). First checks,
   * in one small all-reduce, that every rank has the same number of variables with the same
   * shapes in the same order; a difference rejects on every rank (`BucketLayoutMismatchError`,
   * wrapped).
   */
  async syncWeights(): Promise<void> {
    const where = 'DataParallelTrainer.syncWeights';
    const variables = this.#resolveVariables(where);
    const layout: Record<string, Float32Array> = {};
    variables.forEach((variable, index) => {
      layout[`${index}:[${variable.shape.join(',')}]`] = new Float32Array(0);
    });
    const total = variables.reduce((sum, variable) => sum + variable.size, 0);
    const values = new Float32Array(total);
    if (this.rank === 0) {
      const data = await Promise.all(variables.map((variable) => variable.data<'float32'>()));
      let offset = 0;
      for (const part of data) {
        values.set(part, offset);
        offset += part.length;
      }
    }
    const timeout = this.#timeoutMs === undefined ? {} : { timeoutMs: this.#timeoutMs };
    let received: Float32Array;
    try {
      await bucketedAllReduce(this.transport, layout, { op: 'sum', ...timeout, ...this.#bucketOption() });
      received = await this.transport.broadcast(values, 0, timeout);
    } catch (error) {
      throw this.#communicationError(where, 'broadcast the initial weights', error);
    }
    tf.tidy(() => {
      let offset = 0;
      for (const variable of variables) {
        variable.assign(tf.tensor(received.subarray(offset, offset + variable.size), variable.shape, 'float32'));
        offset += variable.size;
      }
    });
  }

  /**
   * One synchronous data-parallel step: computes this rank's loss and gradients
   * (`optimizer.computeGradients(loss, variables)`), all-reduces (mean) the gradients, the loss
   * and the fresh statistics of the statistics source's second-order layers, then runs
   * `optimizer.applyGradientsWithContext(meanGradients, { loss: meanLoss, extras: { statistics } })`.
   * Resolves with the mean loss over ranks. Tensors it creates are disposed before it resolves;
   * `loss` is called once, inside the gradient tape.
   *
   * Rejects with an `Error` starting `DataParallelTrainer.step:` whose `cause` is the transport's
   * error when the ranks do not agree (different variables or layers: a layout mismatch) or
   * another rank failed or timed out; the optimizer has not stepped then.
   *
   * After a step failed on this rank (its own error, such as a throwing `loss`, or the group's),
   * every later step is refused at once with an `Error` saying so: a rank that catches its error
   * and carries on would otherwise pair its next batch with the others' current one and run out of
   * step with them until the end. The others, waiting for it, fail within their timeout.
   */
  async step(loss: () => tf.Scalar): Promise<number> {
    const where = 'DataParallelTrainer.step';
    if (typeof loss !== 'function') throw new TypeError(`${where}: loss must be a function returning a tf.Scalar`);
    if (this.#failure !== undefined) {
      throw new Error(
        `${where}: rank ${this.rank} refuses step ${this.#steps}: an earlier step failed here (${this.#failure}), ` +
          'so the ranks are no longer in step; stop, or start a new group (transport and trainers)',
      );
    }
    try {
      return await this.#step(where, loss);
    } catch (error) {
      this.#failure = error instanceof Error ? error.message : String(error);
      throw error;
    }
  }

  /** One step: gradients and statistics, their all-reduced means, the optimizer's update. */
  async #step(where: string, loss: () => tf.Scalar): Promise<number> {
    const variables = this.#resolveVariables(where);
    const { value, grads } = this.optimizer.computeGradients(loss, [...variables]);
    const created: tf.Tensor[] = [];
    try {
      const gradients = variables.flatMap((variable, index) => {
        const gradient = grads[variable.name];
        return gradient == null ? [] : [{ index, variable, gradient }];
      });
      const layers = this.#freshStatistics();
      const [lossValue, gradientValues, statisticsValues] = await Promise.all([
        value.data<'float32'>(),
        Promise.all(gradients.map(({ gradient }) => gradient.data<'float32'>())),
        Promise.all(layers.map(({ statistics: s }) => readStatistics(s))),
      ]);
      const float32Vectors: Record<string, Float32Array> = { loss: Float32Array.from(lossValue) };
      gradients.forEach(({ index }, k) => {
        float32Vectors[`gradient/${index}`] = gradientValues[k] as Float32Array;
      });
      const statistics: Record<string, Float32Array> = {};
      layers.forEach(({ index }, k) => {
        for (const [part, vector] of Object.entries(statisticsValues[k] as Record<string, Float32Array>)) {
          statistics[`statistics/${index}/${part}`] = vector;
        }
      });

      let reduced: Record<string, Float32Array>;
      try {
        reduced = await this.#allReduceMean(float32Vectors, statistics);
      } catch (error) {
        throw this.#communicationError(where, `all-reduce step ${this.#steps}`, error);
      }

      const meanGradients: tf.NamedTensorMap = {};
      for (const { index, variable } of gradients) {
        const tensor = tf.tensor(reduced[`gradient/${index}`] as Float32Array, variable.shape, 'float32');
        created.push(tensor);
        meanGradients[variable.name] = tensor;
      }
      const reducedStatistics: Record<string, LayerStatistics | undefined> = {};
      for (const layer of this.statistics?.secondOrder ?? []) reducedStatistics[layer.name] = undefined;
      for (const { index, name, statistics: s } of layers) {
        const vector = (part: string): Float32Array => reduced[`statistics/${index}/${part}`] as Float32Array;
        const a = tf.tensor1d(vector('a'), 'float32');
        const g = tf.tensor1d(vector('g'), 'float32');
        created.push(a, g);
        let covariance: CovarianceStatistics | undefined;
        if (s.covariance !== undefined) {
          covariance = {
            a: tf.tensor2d(vector('covariance/a'), s.covariance.a.shape, 'float32'),
            g: tf.tensor2d(vector('covariance/g'), s.covariance.g.shape, 'float32'),
          };
          created.push(covariance.a, covariance.g);
        }
        reducedStatistics[name] = {
          a,
          g,
          rows: s.rows,
          samples: s.samples,
          step: s.step,
          ...(covariance === undefined ? {} : { covariance }),
        };
      }
      const meanLoss = (reduced.loss as Float32Array)[0] as number;
      const extras = this.statistics === undefined ? {} : { extras: extrasWithStatistics(undefined, reducedStatistics) };
      this.optimizer.applyGradientsWithContext(meanGradients, { loss: meanLoss, ...extras });
      for (const { name, statistics: s } of layers) this.#reducedSteps.set(name, s.step);
      this.#steps += 1;
      return meanLoss;
    } finally {
      tf.dispose([value, ...Object.values(grads), ...created]);
    }
  }

  /**
   * All-reduces (mean) the float32 vectors and the statistics: one `bucketedAllReduce` when the
   * statistics travel in float32 (or there is no statistics source), else two, one after the other
   * (every rank issues the collectives in the same order).
   */
  async #allReduceMean(
    float32Vectors: Record<string, Float32Array>,
    statistics: Record<string, Float32Array>,
  ): Promise<Record<string, Float32Array>> {
    const options = {
      op: 'mean' as const,
      ...this.#bucketOption(),
      ...(this.#timeoutMs === undefined ? {} : { timeoutMs: this.#timeoutMs }),
    };
    if (this.precision === 'float32' || this.statistics === undefined) {
      return bucketedAllReduce(this.transport, { ...float32Vectors, ...statistics }, options);
    }
    const reduced = await bucketedAllReduce(this.transport, float32Vectors, options);
    const halves = await bucketedAllReduce(this.transport, statistics, { ...options, precision: this.precision });
    return { ...reduced, ...halves };
  }

  /** Second-order layers whose statistics changed since the last step (all of them on a training step). */
  #freshStatistics(): LocalLayerStatistics[] {
    const source = this.statistics;
    if (source === undefined) return [];
    return source.secondOrder.flatMap((layer, index) => {
      const statistics = source.statistics(layer.name);
      if (statistics === undefined || statistics.step === this.#reducedSteps.get(layer.name)) return [];
      return [{ index, name: layer.name, statistics }];
    });
  }

  #bucketOption(): { bucketBytes?: number } {
    return this.#bucketBytes === undefined ? {} : { bucketBytes: this.#bucketBytes };
  }

  #resolveVariables(where: string): readonly tf.Variable[] {
    if (this.#variables === undefined) {
      const registered = Object.values(tf.engine().registeredVariables).filter((variable) => variable.trainable);
      if (registered.length === 0) {
        throw new RangeError(`${where}: no trainable variables are registered (build the model first, or pass variables)`);
      }
      this.#variables = checkVariables(where, registered);
    }
    return this.#variables;
  }

  #communicationError(where: string, what: string, error: unknown): Error {
    const detail = error instanceof Error ? error.message : String(error);
    const hint = error instanceof TransportError ? '' : ' (not a transport error)';
    return new Error(`${where}: rank ${this.rank} of ${this.worldSize} could not ${what}${hint}: ${detail}`, { cause: error });
  }
}

/**
 * Checks that `source` has `secondOrder` and `statistics(name)`, naming `where` and `name`. Reads
 * neither: a capture's layers may register later (`createCapture`, an optimizer not yet attached).
 */
function checkStatisticsSource(where: string, name: string, source: unknown): StatisticsSource {
  if (source === null || typeof source !== 'object') {
    throw new TypeError(`${where}: ${name} must be a statistics source (a CaptureRegistry such as optimizer.capture), got ${source === null ? 'null' : typeof source}`);
  }
  const lacking = [
    ...('secondOrder' in source ? [] : ['secondOrder']),
    ...(typeof (source as Partial<StatisticsSource>).statistics === 'function' ? [] : ['statistics(layerName)']),
  ];
  if (lacking.length > 0) {
    throw new TypeError(
      `${where}: ${name} must be a statistics source with secondOrder and statistics(layerName) (a CaptureRegistry such as optimizer.capture); it lacks ${lacking.join(' and ')}`,
    );
  }
  return source as StatisticsSource;
}

/** Checks that `variables` is a non-empty array of live float32 `tf.Variable`s. */
function checkVariables(where: string, variables: readonly tf.Variable[]): readonly tf.Variable[] {
  if (!Array.isArray(variables) || variables.length === 0) {
    throw new TypeError(`${where}: variables must be a non-empty array of tf.Variable`);
  }
  variables.forEach((variable, index) => {
    if (!(variable instanceof tf.Variable)) throw new TypeError(`${where}: variables[${index}] must be a tf.Variable`);
    if (variable.isDisposed) throw new TypeError(`${where}: variables[${index}] ('${variable.name}') has been disposed`);
    if (variable.dtype !== 'float32') {
      throw new TypeError(`${where}: variables[${index}] ('${variable.name}') must have dtype float32, got ${variable.dtype}`);
    }
  });
  return [...variables];
}

/** Reads one layer's statistics into host vectors: `a`, `g`, and the covariances when present. */
async function readStatistics(statistics: LayerStatistics): Promise<Record<string, Float32Array>> {
  const parts: [string, tf.Tensor][] = [
    ['a', statistics.a],
    ['g', statistics.g],
  ];
  if (statistics.covariance !== undefined) {
    parts.push(['covariance/a', statistics.covariance.a], ['covariance/g', statistics.covariance.g]);
  }
  const values = await Promise.all(parts.map(([, tensor]) => tensor.data<'float32'>()));
  return Object.fromEntries(parts.map(([part], k) => [part, values[k] as Float32Array]));
}
