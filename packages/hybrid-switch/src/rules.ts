import { checkNumber, checkOneOf } from '@mkor/core';

/** What a switch rule sees once per step. */
export interface LossObservation {
  /** The step (0-based count of updates) the loss belongs to. */
  readonly step: number;
  /** The training loss of that step; NaN or ±Inf are ignored (and counted) by the loss-rate rule. */
  readonly loss?: number;
  /**
   * Elapsed wall-clock seconds at that step, from any fixed origin (only differences are used).
   * Needed by a loss-rate rule measuring its rate per second.
   */
  readonly seconds?: number;
}

/** The result of {@link SwitchRule.observe}: the rule's next state, and whether to switch now. */
export interface SwitchDecision<S> {
  readonly state: S;
  readonly switchNow: boolean;
}

/**
 * A rule deciding when MKOR-H leaves second-order steps for first-order ones. Its state is plain
 * data (numbers and booleans in objects and fixed-length arrays) so it can be logged and
 * checkpointed with the optimizer's state (`flattenState`/`restoreState` from `@mkor/core`).
 * `observe` is pure: it returns a new state and never changes the one it is given. Once a rule
 * has said `switchNow`, {@link hybridSwitch} stops asking it.
 */
export interface SwitchRule<S = unknown> {
  readonly init: () => S;
  readonly observe: (state: S, observation: LossObservation) => SwitchDecision<S>;
}

/** The state type of a rule. */
export type RuleStateOf<R> = R extends SwitchRule<infer S> ? S : never;

/** Options of {@link lossRateRule}. */
export interface LossRateRuleOptions {
  /**
   * β ∈ [0, 1) of the exponential moving average of the loss (bias-corrected, as Adam's moments).
   * 0 uses the raw loss. Default 0.9 (a memory of about 10 observations).
   */
  readonly smoothing?: number;
  /** W ≥ 1: the rate compares the smoothed loss W finite observations apart. Default 20. */
  readonly window?: number;
  /** Rate per `'step'` (default) or per `'second'` of wall time (needs `observation.seconds`). */
  readonly per?: 'step' | 'second';
  /**
   * τ: the rate counts as too slow when `r < τ·r_best` (`relativeTo: 'best'`, τ ∈ (0, 1]) or when
   * `r < τ` (`relativeTo: 'absolute'`, τ in loss units per step or second). Default 0.1.
   */
  readonly threshold?: number;
  /** What τ is relative to: the best rate seen so far (default) or nothing (`'absolute'`). */
  readonly relativeTo?: 'best' | 'absolute';
  /** No switch on a step before this one (the rate is still measured). Default 0. */
  readonly minSteps?: number;
  /** P ≥ 1: switch after this many consecutive rated observations are too slow. Default 5. */
  readonly patience?: number;
}

/** The state of {@link lossRateRule}: plain numbers and fixed-length arrays. */
export interface LossRateState {
  /** Finite losses observed (n). */
  readonly observations: number;
  /** NaN or ±Inf losses observed and ignored. */
  readonly nonFiniteLosses: number;
  /** The biased moving average s_n (divide by 1 − βⁿ for the smoothed loss ŝ_n). */
  readonly average: number;
  /** Ring buffer of the last W+1 smoothed losses ŝ, indexed by observation mod (W+1). */
  readonly smoothedLosses: number[];
  /** The steps of those observations. */
  readonly steps: number[];
  /** Their elapsed seconds (NaN when not measured per second). */
  readonly seconds: number[];
  /** The latest rate r (NaN until the first rate). */
  readonly rate: number;
  /** The largest rate seen, r_best (−∞ until the first rate). */
  readonly bestRate: number;
  /** Consecutive rated observations that were too slow. */
  readonly slowObservations: number;
}

/**
 * The loss-rate rule of MKOR-H (defined by this project; the paper does not publish its rule).
 * For each observation with a finite loss `L` (non-finite losses are ignored and counted):
 *
 *     s_n = β·s_{n−1} + (1−β)·L,       ŝ_n = s_n / (1 − βⁿ)              (smoothed loss)
 *     r_n = (ŝ_{n−W} − ŝ_n) / Δ_n                                       (decrease rate)
 *
 * where n counts finite observations, and `Δ_n = step_n − step_{n−W}` (per step) or
 * `seconds_n − seconds_{n−W}` (per second). A rate exists once `n − W ≥ ⌈1/(1−β)⌉` (the older
 * end of the window averages at least the EMA's memory of losses, so early noise cannot set a
 * spuriously high best rate) and, per second, when Δ > 0. With `r_best = max r` so far, the rate is too slow when
 * `r_n < τ·r_best` (relative; only once `r_best > 0`) or `r_n < τ` (absolute). The rule switches
 * on the first step ≥ `minSteps` that ends a run of `patience` consecutive too-slow rates
 * (a rate that is fast enough resets the run).
 *
 * On a curve that falls quickly and then plateaus, the window's rate is the mean slope over its
 * last W observations, so it drops below τ·r_best once all but about τ·W of them lie on the
 * plateau: the switch comes about W·(1 − τ) + P − 1 observations after the knee, plus the lag of
 * the moving average (a few of its time constants 1/(1−β)).
 */
export function lossRateRule(options: LossRateRuleOptions = {}): SwitchRule<LossRateState> {
  const where = 'lossRateRule';
  const beta = checkNumber(where, 'smoothing', options.smoothing ?? 0.9, { min: 0, max: 1, maxExclusive: true });
  const window = checkNumber(where, 'window', options.window ?? 20, { min: 1, integer: true });
  const per = checkOneOf(where, 'per', options.per ?? 'step', ['step', 'second']);
  const relativeTo = checkOneOf(where, 'relativeTo', options.relativeTo ?? 'best', ['best', 'absolute']);
  const threshold =
    relativeTo === 'best'
      ? checkNumber(where, 'threshold', options.threshold ?? 0.1, { min: 0, max: 1, minExclusive: true })
      : checkNumber(where, 'threshold', options.threshold ?? 0.1);
  const minSteps = checkNumber(where, 'minSteps', options.minSteps ?? 0, { min: 0, integer: true });
  const patience = checkNumber(where, 'patience', options.patience ?? 5, { min: 1, integer: true });
  const slots = window + 1;
  // The older end of a window must average at least 1/(1−β) losses (the EMA's memory), so that a
  // rate never compares against an average of one or two noisy early losses.
  const warmUp = Math.ceil(1 / (1 - beta) - 1e-9);

  return {
    init: () => ({
      observations: 0,
      nonFiniteLosses: 0,
      average: 0,
      smoothedLosses: new Array<number>(slots).fill(Number.NaN),
      steps: new Array<number>(slots).fill(Number.NaN),
      seconds: new Array<number>(slots).fill(Number.NaN),
      rate: Number.NaN,
      bestRate: Number.NEGATIVE_INFINITY,
      slowObservations: 0,
    }),
    observe: (state, observation) => {
      const { step, loss, seconds } = observation;
      checkNumber(where, 'observation.step', step, { min: 0, integer: true });
      if (loss === undefined) {
        throw new TypeError(`${where}: the observation has no loss (pass the step's loss as context.loss)`);
      }
      if (typeof loss !== 'number') throw new TypeError(`${where}: loss must be a number, got ${typeof loss}`);
      if (per === 'second' && !(typeof seconds === 'number' && Number.isFinite(seconds))) {
        throw new TypeError(
          `${where}: per: 'second' needs finite observation.seconds, got ${String(seconds)} ` +
            '(give hybridSwitch a clock, or pass context.extras.elapsedSeconds)',
        );
      }
      if (!Number.isFinite(loss)) {
        return { state: { ...state, nonFiniteLosses: state.nonFiniteLosses + 1 }, switchNow: false };
      }
      const n = state.observations + 1;
      const average = beta * state.average + (1 - beta) * loss;
      const smoothed = average / (1 - beta ** n);
      const slot = (n - 1) % slots;
      const smoothedLosses = state.smoothedLosses.slice();
      const steps = state.steps.slice();
      const secondsSeen = state.seconds.slice();
      smoothedLosses[slot] = smoothed;
      steps[slot] = step;
      secondsSeen[slot] = per === 'second' ? (seconds as number) : Number.NaN;
      const next = { ...state, observations: n, average, smoothedLosses, steps, seconds: secondsSeen };
      if (n - window < warmUp) return { state: next, switchNow: false };

      // The oldest entry of the ring is the observation W finite losses back.
      const oldest = n % slots;
      const elapsed = per === 'step' ? step - (steps[oldest] as number) : (seconds as number) - (secondsSeen[oldest] as number);
      if (!(elapsed > 0)) return { state: next, switchNow: false };
      const rate = ((smoothedLosses[oldest] as number) - smoothed) / elapsed;
      const bestRate = Math.max(state.bestRate, rate);
      const slow = relativeTo === 'best' ? bestRate > 0 && rate < threshold * bestRate : rate < threshold;
      const slowObservations = slow ? state.slowObservations + 1 : 0;
      return {
        state: { ...next, rate, bestRate, slowObservations },
        switchNow: step >= minSteps && slowObservations >= patience,
      };
    },
  };
}

/** The state of {@link switchAtStep}: nothing to remember (the step comes with each observation). */
export type SwitchAtStepState = Record<string, never>;

/**
 * The manual rule (the authors' code only supports this: resume with the first-order optimizer):
 * switch on the first observed step `≥ step`, so with one observation per step the updates of
 * steps `0 … step−1` are second-order and those from `step` on first-order.
 */
export function switchAtStep(step: number): SwitchRule<SwitchAtStepState> {
  const at = checkNumber('switchAtStep', 'step', step, { min: 0, integer: true });
  return {
    init: () => ({}),
    observe: (state, observation) => ({ state, switchNow: observation.step >= at }),
  };
}

/**
 * Combines rules: every rule observes every step (so each keeps its own state current), and the
 * combination switches as soon as any of them says so. The state is the array of their states.
 */
// SwitchRule<S> is invariant in S, so the constraint has to accept any state type.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function anyOf<const R extends readonly SwitchRule<any>[]>(
  ...rules: R
): SwitchRule<{ -readonly [K in keyof R]: RuleStateOf<R[K]> }> {
  type CombinedState = { -readonly [K in keyof R]: RuleStateOf<R[K]> };
  if (rules.length === 0) throw new RangeError('anyOf: needs at least one rule');
  rules.forEach((rule, i) => {
    if (typeof rule?.observe !== 'function' || typeof rule.init !== 'function') {
      throw new TypeError(`anyOf: argument ${i} is not a SwitchRule (an object with init and observe)`);
    }
  });
  const parts = rules as unknown as readonly SwitchRule<unknown>[];
  return {
    init: () => parts.map((rule) => rule.init()) as unknown as CombinedState,
    observe: (state, observation) => {
      const states = state as unknown as readonly unknown[];
      if (states.length !== parts.length) {
        throw new TypeError(`anyOf: state holds ${states.length} entries for ${parts.length} rules`);
      }
      let switchNow = false;
      const next = parts.map((rule, i) => {
        const decision = rule.observe(states[i], observation);
        switchNow ||= decision.switchNow;
        return decision.state;
      });
      return { state: next as unknown as CombinedState, switchNow };
    },
  };
}
