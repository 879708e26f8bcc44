import { type GuardDecisions, type SkipNonFiniteState, type Transform, chain, skipNonFinite } from '@mkor/core';
import { type HybridSwitchOptions, type HybridSwitchState, type SwitchRule, hasSwitched, hybridSwitch } from '@mkor/hybrid-switch';

import type { LayerSource } from './layers';
import {
  type BlockPreconditionerOptions,
  type BlockPreconditionerState,
  blockPreconditioner,
} from './preconditioner';
import type { UpdateScaling } from './scaling';

/** The hybrid first/second-order switch (MKOR-H, or the same for any method): the rule that ends second-order steps, and how the switch behaves. */
export interface HybridOptions extends HybridSwitchOptions {
  /** E.g. `lossRateRule({ ... })` or `switchAtStep(1000)` from `@mkor/hybrid-switch`. */
  // The rule's state type is the rule's own business.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly rule: SwitchRule<any>;
}

/** What a preconditioner is composed with: its first-order backend, and optionally the hybrid switch. */
export interface CompositionOptions {
  /** The first-order transform that turns the preconditioned gradients into parameter deltas (MKOR step 7), e.g. `adam(...)` from `@mkor/first-order`. */
  readonly backend: Transform<unknown>;
  /** Drop the preconditioner (keep the backend) once the rule says so (MKOR-H); the loss is read from `context.loss`. */
  readonly hybrid?: HybridOptions;
  /**
   * Where the NaN guard decides (`skipNonFinite`'s `decisions`); default `'read-back'`. With
   * `hybrid` and `'device'`, the switch (on the host) sees every step's loss, also the loss of a
   * step the guard refuses (the loss-rate rule ignores a non-finite loss), and may switch on it.
   */
  readonly decisions?: GuardDecisions;
}

/** The preconditioner's state, or the hybrid switch's around it. */
export type PreconditionerPart<P> = P | HybridSwitchState<P, unknown>;

/** The state of a composed second-order transform: the NaN guard around `[preconditioner (or the switch), backend]`. */
export type SecondOrderState<P = BlockPreconditionerState> = SkipNonFiniteState<[PreconditionerPart<P>, unknown]>;

/** A preconditioner composed with its backend, with accessors for what its state holds. */
export interface SecondOrderTransform<P extends { readonly metrics: unknown } = BlockPreconditionerState> extends Transform<SecondOrderState<P>> {
  /** The preconditioner's part of the state; null once the hybrid switch released it. */
  readonly preconditionerState: (state: SecondOrderState<P>) => P | null;
  /** The latest second-order step's metrics, or null (before the first step, without `collectMetrics`, or after the switch). */
  readonly metrics: (state: SecondOrderState<P>) => P['metrics'] | null;
  /** The step at which the hybrid switch went to first-order steps, or −1 (always −1 without `hybrid`). */
  readonly switchedAtStep: (state: SecondOrderState<P>) => number;
}

/** Throws a `TypeError` naming `where` unless `backend` is a transform. */
function checkBackend(where: string, backend: unknown): void {
  const b = backend as Partial<Transform<unknown>> | null | undefined;
  if (typeof b !== 'object' || b === null || typeof b.update !== 'function' || typeof b.init !== 'function') {
    throw new TypeError(`${where}: backend must be a first-order Transform, e.g. adam({ learningRate: 1e-3 }) from @mkor/first-order`);
  }
}

function isSwitchState<P>(s: PreconditionerPart<P>): s is HybridSwitchState<P, unknown> {
  return typeof s === 'object' && s !== null && 'switchedAtStep' in s && 'rule' in s;
}

/**
 * `skipNonFinite(chain(preconditioner, backend))`, or with `hybrid`
 * `skipNonFinite(chain(hybridSwitch(preconditioner, rule), backend))`: a step whose gradients hold
 * NaN or Inf, or whose result would write NaN or Inf into the weights or the state, is refused whole
 * and counted. `backend` must be a transform (a `TypeError` naming `where` otherwise).
 */
export function withBackend<P extends { readonly metrics: unknown }>(
  where: string,
  preconditioner: Transform<P>,
  options: CompositionOptions,
): SecondOrderTransform<P> {
  const { backend, hybrid, decisions } = options;
  checkBackend(where, backend);
  let first: Transform<PreconditionerPart<P>> = preconditioner as Transform<PreconditionerPart<P>>;
  if (hybrid !== undefined) {
    if (typeof hybrid !== 'object' || hybrid === null) throw new TypeError(`${where}: hybrid must be { rule, clock?, releaseOnSwitch? }`);
    const { rule, ...switchOptions } = hybrid;
    first = hybridSwitch(preconditioner, rule, switchOptions) as Transform<PreconditionerPart<P>>;
  }
  const composed = skipNonFinite(chain(first, backend), decisions === undefined ? {} : { decisions });
  const preconditionerState = (state: SecondOrderState<P>): P | null => {
    const inner = state.inner[0];
    return isSwitchState(inner) ? inner.secondOrder : inner;
  };
  const switchedAtStep = (state: SecondOrderState<P>): number => {
    const inner = state.inner[0];
    return isSwitchState(inner) && hasSwitched(inner) ? inner.switchedAtStep : -1;
  };
  return {
    init: composed.init as SecondOrderTransform<P>['init'],
    update: composed.update as SecondOrderTransform<P>['update'],
    preconditionerState,
    metrics: (state) => (switchedAtStep(state) >= 0 ? null : ((preconditionerState(state)?.metrics ?? null) as P['metrics'] | null)),
    switchedAtStep,
  };
}

/** Options of {@link secondOrder}: the blocks and the loop's options, the layers, the backend and the hybrid switch. */
export interface SecondOrderTransformOptions extends BlockPreconditionerOptions, CompositionOptions {
  /** The second-order layers (`capture.secondOrder`), or a function returning them, called once at the first `init`. */
  readonly layers: LayerSource;
}

/**
 * A second-order method as one transform, from its blocks: {@link blockPreconditioner} composed
 * by {@link withBackend}. `mkor()`, `kfac()` and `eva()` are this with their blocks.
 *
 * @param where - the name errors start with (the method's, e.g. `'mkor'`).
 * @param defaultScaling - the method's default update scaling (`'frobenius'` when none is given).
 */
export function secondOrder(
  options: SecondOrderTransformOptions,
  where = 'secondOrder',
  defaultScaling: UpdateScaling = 'frobenius',
): SecondOrderTransform {
  if (options === null || typeof options !== 'object') throw new TypeError(`${where}: options must be an object, got ${String(options)}`);
  const { layers, backend, hybrid, ...loop } = options;
  // The backend is checked before the layers are touched.
  checkBackend(where, backend);
  return withBackend(where, blockPreconditioner(layers, loop, where, defaultScaling), {
    backend,
    ...(hybrid === undefined ? {} : { hybrid }),
    ...(loop.decisions === undefined ? {} : { decisions: loop.decisions }),
  });
}
