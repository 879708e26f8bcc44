import { statisticsOf } from '@mkor/capture';
import { type TensorMap, type Transform, addAll, checkLayerCoverage, checkKnownOptions } from '@mkor/core';
import * as tf from '@tensorflow/tfjs-core';

import { type BlockChoice, type CurvatureBlock, asBlockChoice } from './block';
import { type BlockLayer, type LayerSource, lazyLayers, layerGradientMatrix, splitLayerUpdate } from './layers';
import { RENAMED_OPTIONS, type ResolvedSecondOrderOptions, SECOND_ORDER_OPTION_KEYS, type SecondOrderOptions, resolveSecondOrderOptions } from './options';
import { type LayerUpdate, type UpdateScaling, scaleLayerUpdates } from './scaling';
import { prepareStatistics } from './statistics';

/** Options of {@link blockPreconditioner}: the blocks, and the layer loop's options. */
export interface BlockPreconditionerOptions extends SecondOrderOptions {
  /** One block for every layer, or a choice per layer (`blocksByLayer`). */
  readonly blocks: CurvatureBlock | BlockChoice;
}

/** One layer's part of the state: its block's state and the serial of the statistics it last consumed (−1: none). */
export interface LayerBlockState<S = unknown> {
  readonly block: S;
  readonly statisticsStep: number;
}

/** What happened on one step, for logging (every method reports the same fields). */
export interface SecondOrderStepMetrics {
  /** The preconditioner's step (0 for the first). */
  readonly step: number;
  /** Layers whose block folded new statistics in on this step (a factor refresh). */
  readonly refreshed: readonly string[];
  /** For each event name of the blocks (e.g. `stabilized`, `reset`, `inverted`), the layers it happened to on this step. */
  readonly events: Readonly<Record<string, readonly string[]>>;
  /** The factor each layer's update was scaled by (ν of the KL-clip, or the rescale factor); empty with `scaling: 'none'`. */
  readonly scaleFactors: Readonly<Record<string, number>>;
  /**
   * Milliseconds spent in the blocks' `absorb` (the factor refreshes), measured with
   * `performance.now()` around them: exact on synchronous backends (wasm, cpu); on asynchronous
   * ones (webgl) work still queued is counted where it is waited for.
   */
  readonly factorMs: number;
  /** Milliseconds spent preconditioning, scaling the updates and reading back events and metrics (as `factorMs`). */
  readonly preconditionMs: number;
}

/** Counts since the start, for monitoring. */
export interface SecondOrderTotals {
  /** Steps on which at least one layer's block folded new statistics in. */
  readonly refreshes: number;
  /** How many times each event of the blocks happened (one per layer per step). */
  readonly events: Readonly<Record<string, number>>;
}

/** The state of {@link blockPreconditioner}. */
export interface BlockPreconditionerState {
  readonly step: number;
  readonly layers: Readonly<Record<string, LayerBlockState>>;
  readonly totals: SecondOrderTotals;
  /** The latest step's metrics; null before the first step and without `collectMetrics`. */
  readonly metrics: SecondOrderStepMetrics | null;
  /**
   * With `decisions: 'device'`: how many times each event happened, in the order of the blocks'
   * event names, counted on the device (float32) on top of `totals.events`. Read with {@link readTotals}.
   */
  readonly deviceEvents?: tf.Tensor1D;
}

/** The totals of `state`, `counted` its device event counts' values (with `decisions: 'device'`). */
function totalsOf(state: BlockPreconditionerState, counted: ArrayLike<number> | undefined): SecondOrderTotals {
  if (counted === undefined) return state.totals;
  const names = Object.keys(state.totals.events);
  return { refreshes: state.totals.refreshes, events: Object.fromEntries(names.map((name, i) => [name, (state.totals.events[name] ?? 0) + (counted[i] as number)])) };
}

/**
 * The totals of a {@link blockPreconditioner} state as numbers; with `decisions: 'device'` this
 * reads its event counts back (one synchronous read-back, when asked; on webgpu use
 * {@link readTotalsAsync}).
 */
export function readTotals(state: BlockPreconditionerState): SecondOrderTotals {
  return totalsOf(state, state.deviceEvents?.dataSync());
}

/** {@link readTotals} with an asynchronous read-back (`await tensor.data()`), as WebGPU needs. */
export async function readTotalsAsync(state: BlockPreconditionerState): Promise<SecondOrderTotals> {
  return totalsOf(state, await state.deviceEvents?.data());
}

/** A block preconditioner's options checked: the blocks as a choice, and the loop's options resolved. */
export interface ResolvedBlockPreconditionerOptions extends ResolvedSecondOrderOptions {
  readonly blocks: BlockChoice;
}

/**
 * Checks {@link BlockPreconditionerOptions} (unknown options refused), naming `where`.
 * `defaultScaling` is the method's (`'frobenius'` when none is given).
 */
export function resolveBlockPreconditionerOptions(
  where: string,
  options: BlockPreconditionerOptions,
  defaultScaling: UpdateScaling = 'frobenius',
): ResolvedBlockPreconditionerOptions {
  if (options === null || typeof options !== 'object') throw new TypeError(`${where}: options must be an object, got ${String(options)}`);
  checkKnownOptions(where, options, ['blocks', ...SECOND_ORDER_OPTION_KEYS], RENAMED_OPTIONS);
  return { ...resolveSecondOrderOptions(where, options, defaultScaling), blocks: asBlockChoice(where, options.blocks) };
}

/** The one read-back of a step: the blocks' device-side events and, with metrics, the scale factors. */
function readBack(events: readonly tf.Scalar[], factors: readonly tf.Scalar[]): { events: number[]; factors: number[] } {
  if (events.length + factors.length === 0) return { events: [], factors: [] };
  const values = tf.stack([...events.map((e) => tf.cast(e, 'float32')), ...factors]).dataSync();
  return { events: Array.from(values.subarray(0, events.length)), factors: Array.from(values.subarray(events.length)) };
}

/**
 * The layer loop of every second-order method, as a transform: for each second-order layer it
 * keeps its block's state and, on every step,
 *
 * 1. offers the block the layer's statistics when fresh (`absorb`: the factor refresh), prepared
 *    once for all blocks (bias folded in, the output side scaled by the count), and counts the
 *    events the blocks report;
 * 2. preconditions the layer's gradient as one `[∇K; ∇b]` matrix (`precondition`);
 * 3. scales the updates of all layers together (`scaling`: KL-clip, Frobenius rescale, summed-norms
 *    rescale, or none) and splits them back into the layers' variables. Other variables pass through.
 *
 * Statistics come from the step's context (`statisticsOf` of `@mkor/capture`); a layer without
 * fresh statistics keeps its state unless its block changes it on its own schedule. Each step reads
 * back at most once: the blocks' device-side events and, with `collectMetrics`, the scale factors;
 * with `decisions: 'device'` never (the events are counted on the device, see `deviceEvents`).
 * Chain a first-order transform after it; `secondOrder()` does.
 *
 * @param layers - the second-order layers (`capture.secondOrder`), or a function returning them,
 *   called once at the first `init`.
 * @param where - the name errors start with (the method's, e.g. `'mkorPreconditioner'`).
 */
export function blockPreconditioner(
  layers: LayerSource,
  options: BlockPreconditionerOptions,
  where = 'blockPreconditioner',
  defaultScaling: UpdateScaling = 'frobenius',
): Transform<BlockPreconditionerState> {
  const resolved = resolveBlockPreconditionerOptions(where, options, defaultScaling);
  const layersOf = lazyLayers(where, layers);
  const eventNames = [...new Set(resolved.blocks.blocks.flatMap((block) => block.events))];
  const chosen = new Map<string, CurvatureBlock>();
  const blockOf = (layer: BlockLayer): CurvatureBlock => {
    let block = chosen.get(layer.name);
    if (block === undefined) {
      block = resolved.blocks.choose(layer);
      if (!resolved.blocks.blocks.includes(block)) {
        throw new RangeError(`${where}(layer '${layer.name}'): the block chosen for the layer is not among the choice's blocks`);
      }
      chosen.set(layer.name, block);
    }
    return block;
  };

  return {
    init: () => ({
      step: 0,
      layers: Object.fromEntries(
        layersOf().map((layer) => [layer.name, { block: blockOf(layer).init(layer), statisticsStep: -1 } satisfies LayerBlockState]),
      ),
      totals: { refreshes: 0, events: Object.fromEntries(eventNames.map((name) => [name, 0])) },
      metrics: null,
      ...(resolved.decisions === 'device' ? { deviceEvents: tf.zeros([eventNames.length]) as tf.Tensor1D } : {}),
    }),

    update: (gradients: TensorMap, state, context) => {
      const list = layersOf();
      const statistics = statisticsOf(context, where);
      checkLayerCoverage(where, list.map((layer) => layer.name), state.layers, statistics);

      const factorStart = performance.now();
      const next: Record<string, LayerBlockState> = { ...state.layers };
      const refreshed: string[] = [];
      const known: { name: string; layer: string }[] = [];
      const pending: { name: string; layer: string; flag: tf.Scalar }[] = [];
      for (const layer of list) {
        const block = blockOf(layer);
        const current = state.layers[layer.name] as LayerBlockState;
        const captured = statistics[layer.name];
        const fresh =
          captured === undefined || captured.step === current.statisticsStep
            ? undefined
            : prepareStatistics(where, layer, captured, { gradientScale: resolved.gradientScale, needsCovariance: block.needsCovariance });
        const absorbed = block.absorb(current.block, fresh, { step: state.step, layer });
        const consumed = absorbed.consumed && captured !== undefined && fresh !== undefined;
        next[layer.name] = { block: absorbed.state, statisticsStep: consumed ? captured.step : current.statisticsStep };
        if (consumed) refreshed.push(layer.name);
        for (const [name, value] of Object.entries(absorbed.events ?? {})) {
          if (!block.events.includes(name)) {
            throw new RangeError(`${where}(layer '${layer.name}'): block '${block.kind}' reported event '${name}', not among its events (${block.events.join(', ')})`);
          }
          if (value instanceof tf.Tensor) pending.push({ name, layer: layer.name, flag: value });
          else if (value) known.push({ name, layer: layer.name });
        }
      }
      const factorMs = performance.now() - factorStart;

      const preconditionStart = performance.now();
      const preconditioned: LayerUpdate[] = [];
      for (const layer of list) {
        const gradient = layerGradientMatrix(where, layer, gradients);
        if (gradient === undefined) continue;
        const block = blockOf(layer);
        preconditioned.push({ layer, update: block.precondition((next[layer.name] as LayerBlockState).block, gradient, { step: state.step, layer }), gradient });
      }
      const scaled = scaleLayerUpdates(where, resolved, state.step, preconditioned, resolved.collectMetrics && resolved.decisions === 'read-back');
      const updates: Record<string, tf.Tensor> = { ...gradients };
      preconditioned.forEach(({ layer }, i) => Object.assign(updates, splitLayerUpdate(layer, scaled.updates[i] as tf.Tensor2D)));
      const onDevice = resolved.decisions === 'device';
      const read = onDevice ? { events: [], factors: [] } : readBack(pending.map((p) => p.flag), resolved.collectMetrics ? scaled.factors : []);
      const happened = [...known, ...(onDevice ? [] : pending.filter((_, i) => read.events[i] !== 0))];
      const deviceEvents = onDevice ? countOnDevice(state.deviceEvents, eventNames, pending) : undefined;
      const preconditionMs = performance.now() - preconditionStart;

      const events = Object.fromEntries(eventNames.map((name) => [name, happened.filter((e) => e.name === name).map((e) => e.layer)]));
      const metrics: SecondOrderStepMetrics | null = resolved.collectMetrics
        ? {
            step: state.step,
            refreshed,
            events,
            scaleFactors: Object.fromEntries(read.factors.map((factor, i) => [(preconditioned[i] as LayerUpdate).layer.name, factor])),
            factorMs,
            preconditionMs,
          }
        : null;
      return {
        updates,
        state: {
          step: state.step + 1,
          layers: next,
          totals: {
            refreshes: state.totals.refreshes + (refreshed.length > 0 ? 1 : 0),
            events: Object.fromEntries(eventNames.map((name) => [name, (state.totals.events[name] ?? 0) + (events[name] as string[]).length])),
          },
          metrics,
          ...(deviceEvents === undefined ? {} : { deviceEvents }),
        },
      };
    },
  };
}

/** `previous` plus, for each event name, how many of this step's device flags for it are set. */
function countOnDevice(previous: tf.Tensor1D | undefined, eventNames: readonly string[], pending: readonly { name: string; flag: tf.Scalar }[]): tf.Tensor1D {
  const start = previous ?? (tf.zeros([eventNames.length]) as tf.Tensor1D);
  if (pending.length === 0 || eventNames.length === 0) return start;
  const counts = eventNames.map((name) => {
    const flags = pending.filter((p) => p.name === name).map((p) => tf.cast(p.flag, 'float32'));
    return flags.length === 0 ? tf.scalar(0) : addAll(flags);
  });
  return tf.add(start, tf.stack(counts)) as tf.Tensor1D;
}
