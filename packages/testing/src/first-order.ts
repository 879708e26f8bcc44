/**
 * Float64 references of the first-order update rules (SGD with momentum/Nesterov, Adam, AdamW,
 * LAMB), written from the papers' equations in plain TypeScript, for `@mkor/first-order`'s tests.
 * Parameters, gradients and updates are maps of flat `Float64Array`s; each reference keeps its
 * own state and returns the final updates `u` (the deltas added to the parameters: `w ← w + u`).
 */

/** Flat float64 values per parameter name. */
export type Values64 = Record<string, Float64Array>;

/** One optimizer step in float64: the current parameters and gradients in, the updates out. */
export type Reference64 = (params: Values64, grads: Values64) => Values64;

/** A hyperparameter as a function of the (0-based) step. */
export type Schedule64 = (step: number) => number;

/** Chooses the parameters a reference decays (by name). */
export type NameMask64 = (name: string) => boolean;

const always: NameMask64 = () => true;

function mapEntries(grads: Values64, f: (name: string, g: Float64Array) => Float64Array): Values64 {
  const out: Values64 = {};
  for (const [name, g] of Object.entries(grads)) out[name] = f(name, g);
  return out;
}

/** `‖x‖₂` in float64. */
export function norm64(x: Float64Array): number {
  let s = 0;
  for (const v of x) s += v * v;
  return Math.sqrt(s);
}

/** Options of {@link sgdReference64}. */
export interface SgdReference64Options {
  readonly learningRate: Schedule64;
  readonly momentum?: Schedule64;
  readonly nesterov?: boolean;
  readonly weightDecay?: Schedule64;
  readonly decays?: NameMask64;
}

/** `g ← g + λw; b ← μb + g; u = −η·b` (Nesterov: `u = −η·(g + μb)`). */
export function sgdReference64(options: SgdReference64Options): Reference64 {
  const { learningRate, momentum, nesterov = false, weightDecay, decays = always } = options;
  const buffers: Values64 = {};
  let step = 0;
  return (params, grads) => {
    const eta = learningRate(step);
    const mu = momentum?.(step);
    const lambda = weightDecay?.(step) ?? 0;
    const updates = mapEntries(grads, (name, g) => {
      const w = params[name] as Float64Array;
      const d = g.map((gi, i) => gi + (decays(name) ? lambda * (w[i] as number) : 0));
      if (mu === undefined) return d.map((di) => -eta * di);
      const b = (buffers[name] ??= new Float64Array(g.length));
      b.forEach((bi, i) => (b[i] = mu * bi + (d[i] as number)));
      return d.map((di, i) => -eta * (nesterov ? di + mu * (b[i] as number) : (b[i] as number)));
    });
    step += 1;
    return updates;
  };
}

/** Options of the Adam-family references. */
export interface AdamReference64Options {
  readonly learningRate: Schedule64;
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  readonly weightDecay?: Schedule64;
  readonly decays?: NameMask64;
}

/** Adam's bias-corrected ratio `m̂/(√v̂+ε)` per parameter, with its moments kept in a closure. */
function adamRatio64(beta1: number, beta2: number, epsilon: number) {
  const m: Values64 = {};
  const v: Values64 = {};
  return (name: string, g: Float64Array, t: number): Float64Array => {
    const mi = (m[name] ??= new Float64Array(g.length));
    const vi = (v[name] ??= new Float64Array(g.length));
    return g.map((gk, k) => {
      mi[k] = beta1 * (mi[k] as number) + (1 - beta1) * gk;
      vi[k] = beta2 * (vi[k] as number) + (1 - beta2) * gk * gk;
      const mHat = (mi[k] as number) / (1 - beta1 ** t);
      const vHat = (vi[k] as number) / (1 - beta2 ** t);
      return mHat / (Math.sqrt(vHat) + epsilon);
    });
  };
}

/** Adam with L2 in the gradient: `g ← g + λw`, `u = −η·m̂/(√v̂+ε)`. */
export function adamReference64(options: AdamReference64Options): Reference64 {
  const { learningRate, beta1, beta2, epsilon, weightDecay, decays = always } = options;
  const ratio = adamRatio64(beta1, beta2, epsilon);
  let step = 0;
  return (params, grads) => {
    const eta = learningRate(step);
    const lambda = weightDecay?.(step) ?? 0;
    const updates = mapEntries(grads, (name, g) => {
      const w = params[name] as Float64Array;
      const d = g.map((gi, i) => gi + (decays(name) ? lambda * (w[i] as number) : 0));
      return ratio(name, d, step + 1).map((r) => -eta * r);
    });
    step += 1;
    return updates;
  };
}

/** AdamW: `u = −η·(m̂/(√v̂+ε) + λw)`. */
export function adamwReference64(options: AdamReference64Options): Reference64 {
  const { learningRate, beta1, beta2, epsilon, weightDecay, decays = always } = options;
  const ratio = adamRatio64(beta1, beta2, epsilon);
  let step = 0;
  return (params, grads) => {
    const eta = learningRate(step);
    const lambda = weightDecay?.(step) ?? 0;
    const updates = mapEntries(grads, (name, g) => {
      const w = params[name] as Float64Array;
      return ratio(name, g, step + 1).map((r, i) => -eta * (r + (decays(name) ? lambda * (w[i] as number) : 0)));
    });
    step += 1;
    return updates;
  };
}

/** Options of {@link lambReference64}. */
export interface LambReference64Options extends AdamReference64Options {
  readonly minWeightNorm?: number;
  readonly maxWeightNorm?: number;
  readonly trusts?: NameMask64;
}

/**
 * LAMB (You et al. 2019, Algorithm 2): `r = m̂/(√v̂+ε)`, `u = r + λw`,
 * `Δw = −η·φ(‖w‖)/‖u‖·u` with `φ = clip(·, γ_l, γ_u)` and a ratio of 1 when either norm is 0.
 */
export function lambReference64(options: LambReference64Options): Reference64 {
  const { learningRate, beta1, beta2, epsilon, weightDecay, decays = always, trusts = always } = options;
  const { minWeightNorm = 0, maxWeightNorm = Number.POSITIVE_INFINITY } = options;
  const ratio = adamRatio64(beta1, beta2, epsilon);
  let step = 0;
  return (params, grads) => {
    const eta = learningRate(step);
    const lambda = weightDecay?.(step) ?? 0;
    const updates = mapEntries(grads, (name, g) => {
      const w = params[name] as Float64Array;
      const u = ratio(name, g, step + 1).map((r, i) => r + (decays(name) ? lambda * (w[i] as number) : 0));
      const weightNorm = norm64(w);
      const updateNorm = norm64(u);
      const phi = Math.min(Math.max(weightNorm, minWeightNorm), maxWeightNorm);
      const trust = trusts(name) && weightNorm > 0 && updateNorm > 0 ? phi / updateNorm : 1;
      return u.map((ui) => -eta * trust * ui);
    });
    step += 1;
    return updates;
  };
}
