/**
 * A hyperparameter that changes with the step: `step` counts from 0 at the first update.
 * Schedules are evaluated on the host (plain numbers), once per step.
 */
export type Schedule = (step: number) => number;

/** A hyperparameter given as a constant or as a {@link Schedule}. */
export type Hyperparameter = number | Schedule;

/**
 * The value of a hyperparameter at `step`. Throws a `RangeError` naming `name` when the value
 * (or what the schedule returns) is not a finite number, so a broken schedule fails loudly
 * instead of writing NaN into the weights.
 */
export function resolveHyperparameter(value: Hyperparameter, step: number, name: string): number {
  const resolved = typeof value === 'number' ? value : value(step);
  if (typeof resolved !== 'number' || !Number.isFinite(resolved)) {
    throw new RangeError(
      `${name} must be a finite number, got ${String(resolved)}` +
        (typeof value === 'number' ? '' : ` from its schedule at step ${step}`),
    );
  }
  return resolved;
}

/** `init + (end − init)·min(step, steps)/steps`: a linear ramp that then stays at `end`. */
export function linearSchedule(init: number, end: number, steps: number): Schedule {
  if (!(Number.isInteger(steps) && steps > 0)) {
    throw new RangeError(`linearSchedule: steps must be a positive integer, got ${steps}`);
  }
  return (step) => init + ((end - init) * Math.min(step, steps)) / steps;
}

/** `init · rate^(step / steps)`: exponential decay by `rate` every `steps` steps. */
export function exponentialDecay(init: number, rate: number, steps: number): Schedule {
  if (!(rate > 0) || !(steps > 0)) {
    throw new RangeError(`exponentialDecay: rate and steps must be positive, got ${rate}, ${steps}`);
  }
  return (step) => init * rate ** (step / steps);
}

/**
 * Cosine decay from `init` to `init·alpha` over `steps` steps:
 * `init·((1−α)·½(1 + cos(π·min(t, T)/T)) + α)`.
 */
export function cosineDecay(init: number, steps: number, alpha = 0): Schedule {
  if (!(Number.isInteger(steps) && steps > 0)) {
    throw new RangeError(`cosineDecay: steps must be a positive integer, got ${steps}`);
  }
  return (step) => {
    const progress = Math.min(step, steps) / steps;
    return init * ((1 - alpha) * 0.5 * (1 + Math.cos(Math.PI * progress)) + alpha);
  };
}

/** A linear warm-up from 0 to `schedule(0)` over `warmupSteps`, then `schedule(t − warmupSteps)`. */
export function withWarmup(schedule: Hyperparameter, warmupSteps: number): Schedule {
  if (!(Number.isInteger(warmupSteps) && warmupSteps >= 0)) {
    throw new RangeError(`withWarmup: warmupSteps must be a non-negative integer, got ${warmupSteps}`);
  }
  const at = (t: number) => (typeof schedule === 'number' ? schedule : schedule(t));
  return (step) =>
    step < warmupSteps ? (at(0) * (step + 1)) / warmupSteps : at(step - warmupSteps);
}
