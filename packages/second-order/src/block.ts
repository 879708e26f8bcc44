import { type InverseFactor, applyInverseFactor } from '@mkor/sherman-morrison';
import * as tf from '@tensorflow/tfjs-core';

import type { BlockLayer } from './layers';
import type { BlockStatistics } from './statistics';

/** What a block knows of the step it is called on. */
export interface BlockStep {
  /** The preconditioner's step (0 for the first), for schedules and refresh intervals. */
  readonly step: number;
  /** The layer whose state this is. */
  readonly layer: BlockLayer;
}

/**
 * What {@link CurvatureBlock.absorb} returns: the next state, whether it used the statistics, and
 * what happened.
 */
export interface Absorbed<S> {
  /** The next state (tensors the block made, or the old state's when nothing changed). */
  readonly state: S;
  /**
   * Whether the statistics were folded in. The layer loop then takes them as seen: the same
   * statistics are not offered again, and the layer counts as refreshed in the step's metrics.
   */
  readonly consumed: boolean;
  /**
   * Events of this step by name (e.g. `stabilized`, `reset`), each a boolean known now or a bool
   * scalar tensor left on the device; the layer loop reads every layer's tensors back together in
   * one read-back. Names must be among the block's {@link CurvatureBlock.events}.
   */
  readonly events?: Readonly<Record<string, boolean | tf.Scalar>>;
}

/**
 * The per-layer curvature model of a second-order method (kfac-jax's curvature blocks, as optax
 * transforms: pure functions of a state). A method is a block; the layer loop
 * (`blockPreconditioner`) owns everything around it: the layers and their validation, the
 * statistics (bias folded into `a`, `g` scaled by the count, freshness), the gradient as one
 * `[∇K; ∇b]` matrix, the update scaling, metrics, timing and totals.
 *
 * The contract on memory is the transforms': calls run inside `tf.tidy`, never dispose their
 * inputs, and may return input tensors (or the old state's) unchanged. (Members are methods so
 * that a block of a specific state type is a `CurvatureBlock` of any.)
 */
export interface CurvatureBlock<S = unknown> {
  /** The block's name in errors, metrics and configurations, e.g. `'mkor'`. */
  readonly kind: string;
  /** Whether {@link absorb} reads the statistics' covariances (capture with `{ covariance: true }`). */
  readonly needsCovariance: boolean;
  /** The names of the events {@link absorb} may report, so the totals can count each. */
  readonly events: readonly string[];
  /** The state of a layer before any statistics. */
  init(layer: BlockLayer): S;
  /**
   * The factor refresh, called on every step: `statistics` are the layer's when fresh (not yet
   * consumed), else undefined. A block that refreshes on a schedule of `step` returns
   * `consumed: false` in between, and the statistics are offered again.
   */
  absorb(state: S, statistics: BlockStatistics | undefined, step: BlockStep): Absorbed<S>;
  /** The preconditioned gradient, `[foldedInputDim, outputDim]` like `gradient` (`[∇K; ∇b]`, tfjs's kernel layout). */
  precondition(state: S, gradient: tf.Tensor2D, step: BlockStep): tf.Tensor2D;
}

/** A choice of block per layer (e.g. KFAC for narrow layers, MKOR for wide ones); see `blocksByLayer`. */
export interface BlockChoice {
  /** Every block the choice can make (for what they need of the capture, and their event names). */
  readonly blocks: readonly CurvatureBlock[];
  /** The block of a layer. */
  readonly choose: (layer: BlockLayer) => CurvatureBlock;
}

/** A rule of {@link blocksByLayer}: the block for the layers `match` accepts. */
export interface BlockRule {
  readonly match: (layer: BlockLayer) => boolean;
  readonly block: CurvatureBlock;
}

function checkBlock(where: string, name: string, block: unknown): CurvatureBlock {
  const b = block as Partial<CurvatureBlock> | null | undefined;
  if (
    typeof b !== 'object' ||
    b === null ||
    typeof b.init !== 'function' ||
    typeof b.absorb !== 'function' ||
    typeof b.precondition !== 'function' ||
    typeof b.kind !== 'string' ||
    !Array.isArray(b.events)
  ) {
    throw new TypeError(`${where}: ${name} must be a CurvatureBlock ({ kind, needsCovariance, events, init, absorb, precondition }), e.g. mkorBlock()`);
  }
  return b as CurvatureBlock;
}

/**
 * A block per layer: the first rule whose `match` accepts the layer gives its block, else
 * `otherwise`. E.g. `blocksByLayer([{ match: (l) => l.foldedInputDim <= 256, block: kfacBlock() }], mkorBlock())`.
 */
export function blocksByLayer(rules: readonly BlockRule[], otherwise: CurvatureBlock): BlockChoice {
  const where = 'blocksByLayer';
  if (!Array.isArray(rules)) throw new TypeError(`${where}: rules must be an array of { match, block }`);
  rules.forEach((rule, i) => {
    if (typeof rule?.match !== 'function') throw new TypeError(`${where}: rules[${i}].match must be a function (layer) => boolean`);
    checkBlock(where, `rules[${i}].block`, rule.block);
  });
  checkBlock(where, 'otherwise', otherwise);
  return {
    blocks: [...rules.map((rule) => rule.block), otherwise],
    choose: (layer) => rules.find((rule) => rule.match(layer))?.block ?? otherwise,
  };
}

/** A block, or a choice of block per layer, as a {@link BlockChoice}; checked, naming `where`. */
export function asBlockChoice(where: string, blocks: CurvatureBlock | BlockChoice): BlockChoice {
  if (typeof blocks === 'object' && blocks !== null && 'choose' in blocks && 'blocks' in blocks) {
    if (typeof blocks.choose !== 'function' || !Array.isArray(blocks.blocks)) {
      throw new TypeError(`${where}: blocks must be a CurvatureBlock or a BlockChoice ({ blocks, choose }), e.g. blocksByLayer(...)`);
    }
    blocks.blocks.forEach((block, i) => checkBlock(where, `blocks.blocks[${i}]`, block));
    return blocks;
  }
  const block = checkBlock(where, 'blocks', blocks);
  return { blocks: [block], choose: () => block };
}

/**
 * Kronecker-factored preconditioning with inverse factors, the step MKOR and KFAC share:
 * `ΔW = L⁻¹ ∇W R⁻¹` (paper eq. 1/2), in tfjs's kernel layout `R⁻¹ [∇K; ∇b] L⁻¹`, with `R⁻¹` of
 * size `foldedInputDim` and `L⁻¹` of size `outputDim`, each dense (O(d²·n)) or in low-rank form
 * (O(r·d·n); see `InverseFactor` of `@mkor/sherman-morrison`).
 */
export function kroneckerPrecondition(inputInverse: InverseFactor, gradient: tf.Tensor2D, outputInverse: InverseFactor): tf.Tensor2D {
  return tf.tidy(() => applyInverseFactor(outputInverse, applyInverseFactor(inputInverse, gradient, 'left'), 'right'));
}
