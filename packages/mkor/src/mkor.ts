import { type SkipNonFiniteState, type Transform, chain, skipNonFinite } from '@mkor/core';
import {
  type HybridSwitchOptions,
  type HybridSwitchState,
  type SwitchRule,
  hasSwitched,
  hybridSwitch,
} from '@mkor/hybrid-switch';

import type { MkorOptions } from './options';
import {
  type MkorPreconditionerState,
  type MkorStepMetrics,
  type PreconditionedLayer,
  mkorPreconditioner,
} from './preconditioner';

/** MKOR-H: the rule that ends second-order steps, and how the switch behaves. */
export interface MkorHybridOptions extends HybridSwitchOptions {
  /** E.g. `lossRateRule({ ... })` or `switchAtStep(1000)` from `@mkor/hybrid-switch`. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly rule: SwitchRule<any>;
}

/** Options of {@link mkor}: the preconditioner's, plus its layers, the backend and MKOR-H. */
export interface MkorTransformOptions extends MkorOptions {
  /**
   * The second-order layers (e.g. `prepareModel(model).secondOrder` from `@mkor/capture`), or a
   * function returning them, called once at the first `init`.
   */
  readonly layers: readonly PreconditionedLayer[] | (() => readonly PreconditionedLayer[]);
  /**
   * The first-order transform that turns the preconditioned gradients into parameter deltas
   * (step 7), e.g. `adam({ learningRate: 1e-3 })` or `lamb(...)` from `@mkor/first-order`.
   */
  readonly backend: Transform<unknown>;
  /** Make it MKOR-H: drop the preconditioner (keep the backend) once the rule says so. */
  readonly hybrid?: MkorHybridOptions;
}

/** The preconditioner's state, or MKOR-H's switch around it. */
export type MkorSecondOrderState = MkorPreconditionerState | HybridSwitchState<MkorPreconditionerState, unknown>;

/** The state of {@link mkor}: the NaN guard around `[preconditioner (or MKOR-H), backend]`. */
export type MkorState = SkipNonFiniteState<[MkorSecondOrderState, unknown]>;

/** The composed MKOR transform, with accessors for what its state holds. */
export interface MkorTransform extends Transform<MkorState> {
  /** The preconditioner's part of the state (factors, totals, metrics); null once MKOR-H released it. */
  readonly preconditionerState: (state: MkorState) => MkorPreconditionerState | null;
  /** The latest second-order step's metrics, or null (before the first step, when disabled, or after the switch). */
  readonly metrics: (state: MkorState) => MkorStepMetrics | null;
  /** The step at which MKOR-H switched to first order, or −1 (always −1 without `hybrid`). */
  readonly switchedAtStep: (state: MkorState) => number;
}

function isHybridState(s: MkorSecondOrderState): s is HybridSwitchState<MkorPreconditionerState, unknown> {
  return 'switchedAtStep' in s;
}

/**
 * MKOR as one transform:
 * `skipNonFinite(chain(mkorPreconditioner(layers, options), backend))`, or with `hybrid`
 * (MKOR-H) `skipNonFinite(chain(hybridSwitch(mkorPreconditioner(...), rule), backend))`.
 * A step whose gradients hold NaN or Inf is skipped whole (factors, moments and weights are left
 * as they were) and counted. Statistics come in `context.extras.statistics`; MKOR-H reads the
 * loss from `context.loss`.
 */
export function mkor(options: MkorTransformOptions): MkorTransform {
  const { layers, backend, hybrid, ...preconditionerOptions } = options;
  if (backend === undefined || typeof backend.update !== 'function') {
    throw new TypeError('mkor: backend must be a first-order Transform, e.g. adam({ learningRate: 1e-3 })');
  }
  const preconditioner = mkorPreconditioner(layers, preconditionerOptions);
  let secondOrder: Transform<MkorSecondOrderState> = preconditioner as Transform<MkorSecondOrderState>;
  if (hybrid !== undefined) {
    const { rule, ...switchOptions } = hybrid;
    secondOrder = hybridSwitch(preconditioner, rule, switchOptions) as Transform<MkorSecondOrderState>;
  }
  const composed = skipNonFinite(chain(secondOrder, backend));
  const preconditionerState = (state: MkorState): MkorPreconditionerState | null => {
    const inner = state.inner[0];
    return isHybridState(inner) ? inner.secondOrder : inner;
  };
  const switchedAtStep = (state: MkorState): number => {
    const inner = state.inner[0];
    return isHybridState(inner) && hasSwitched(inner) ? inner.switchedAtStep : -1;
  };
  return {
    init: composed.init as MkorTransform['init'],
    update: composed.update as MkorTransform['update'],
    preconditionerState,
    metrics: (state) => (switchedAtStep(state) >= 0 ? null : (preconditionerState(state)?.metrics ?? null)),
    switchedAtStep,
  };
}
