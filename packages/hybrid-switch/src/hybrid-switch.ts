import type { Transform } from '@mkor/core';

import type { SwitchRule } from './rules';

/** Options of {@link hybridSwitch}. */
export interface HybridSwitchOptions {
  /**
   * Wall-clock time in seconds from any fixed origin, read once per step while second-order, e.g.
   * `() => performance.now() / 1000`. Only differences are used. A number in
   * `context.extras.elapsedSeconds` takes precedence over it.
   */
  readonly clock?: () => number;
  /**
   * Whether the second-order state (e.g. MKOR's inverse factors, 2d² numbers per layer) is
   * dropped at the switch (`secondOrder` becomes `null`, and `applyTransform` frees its tensors).
   * Default false: the state is kept, unchanged, so the state keeps the structure of a fresh
   * `init` and checkpoints restore with the usual template (see the package docs).
   */
  readonly releaseOnSwitch?: boolean;
}

/** The state of {@link hybridSwitch}. */
export interface HybridSwitchState<S, R> {
  /** The second-order transform's state; `null` once released at the switch. */
  readonly secondOrder: S | null;
  /** The switch rule's state (plain data). */
  readonly rule: R;
  /** Updates seen (the step of the next update). */
  readonly step: number;
  /** The step whose update was the first first-order one; −1 while second-order steps run. */
  readonly switchedAtStep: number;
}

/** Whether a {@link hybridSwitch} state has switched to first-order steps. */
export function hasSwitched(state: HybridSwitchState<unknown, unknown>): boolean {
  return state.switchedAtStep >= 0;
}

function elapsedSeconds(extras: Readonly<Record<string, unknown>> | undefined, clock: (() => number) | undefined) {
  const given = extras?.elapsedSeconds;
  if (given !== undefined) {
    if (typeof given !== 'number' || !Number.isFinite(given)) {
      throw new TypeError(`hybridSwitch: context.extras.elapsedSeconds must be a finite number, got ${String(given)}`);
    }
    return given;
  }
  if (clock === undefined) return undefined;
  const now = clock();
  if (typeof now !== 'number' || !Number.isFinite(now)) {
    throw new TypeError(`hybridSwitch: the clock must return finite seconds, got ${String(now)}`);
  }
  return now;
}

/**
 * MKOR-H: runs `secondOrder` (e.g. MKOR's preconditioner, chained before a first-order backend)
 * until `rule` says its steps no longer pay, then passes the updates through untouched, for good
 * (optax's `conditionally_transform` shape; the backend after it keeps running either way).
 *
 * At step t (counting this transform's updates from 0) it asks the rule with
 * `{ step: t, loss: context.loss, seconds }` (seconds from `context.extras.elapsedSeconds`, else
 * from `options.clock`, else none). When the rule answers `switchNow`, the update of step t is
 * already first-order and `switchedAtStep = t` is recorded in the state; the rule is not asked
 * again and the switch is never undone.
 */
export function hybridSwitch<S, R>(
  secondOrder: Transform<S>,
  rule: SwitchRule<R>,
  options: HybridSwitchOptions = {},
): Transform<HybridSwitchState<S, R>> {
  const where = 'hybridSwitch';
  if (typeof secondOrder?.update !== 'function' || typeof secondOrder.init !== 'function') {
    throw new TypeError(`${where}: secondOrder must be a Transform (an object with init and update)`);
  }
  if (typeof rule?.observe !== 'function' || typeof rule.init !== 'function') {
    throw new TypeError(`${where}: rule must be a SwitchRule, e.g. lossRateRule() or switchAtStep(1000)`);
  }
  const { clock, releaseOnSwitch = false } = options;
  if (clock !== undefined && typeof clock !== 'function') {
    throw new TypeError(`${where}: clock must be a function returning seconds, got ${typeof clock}`);
  }
  if (typeof releaseOnSwitch !== 'boolean') {
    throw new TypeError(`${where}: releaseOnSwitch must be a boolean, got ${String(releaseOnSwitch)}`);
  }
  const firstOrderState = (state: HybridSwitchState<S, R>, switchedAtStep: number): HybridSwitchState<S, R> => ({
    secondOrder: releaseOnSwitch ? null : state.secondOrder,
    rule: state.rule,
    step: state.step + 1,
    switchedAtStep,
  });
  return {
    init: (params) => ({ secondOrder: secondOrder.init(params), rule: rule.init(), step: 0, switchedAtStep: -1 }),
    update: (updates, state, context) => {
      if (hasSwitched(state)) return { updates, state: firstOrderState(state, state.switchedAtStep) };
      const decision = rule.observe(state.rule, {
        step: state.step,
        loss: context?.loss,
        seconds: elapsedSeconds(context?.extras, clock),
      });
      if (decision.switchNow) {
        return { updates, state: firstOrderState({ ...state, rule: decision.state }, state.step) };
      }
      if (state.secondOrder === null) {
        throw new TypeError(`${where}: the second-order state is null but the switch has not happened`);
      }
      const result = secondOrder.update(updates, state.secondOrder, context);
      return {
        updates: result.updates,
        state: { secondOrder: result.state, rule: decision.state, step: state.step + 1, switchedAtStep: -1 },
      };
    },
  };
}
