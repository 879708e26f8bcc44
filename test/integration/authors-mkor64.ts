/**
 * A float64 mirror of the authors' public MKOR code (`mkor/mkor.py` of Mohammad-Mozaffari/mkor)
 * for a two-layer MLP with biases, a ReLU and a mean-squared-error loss, written from the spec
 * (shared MKOR-SPEC.md, "reference" details) in the authors' own layout: weights `[out, in]`,
 * gradients as `[∇W | ∇b]`, factors `GG⁻¹` (out × out) and `AA⁻¹` ((in+1) × (in+1)).
 * Plain TypeScript on Float64Arrays, independent of the tfjs code it checks.
 */
import {
  type Matrix64,
  combine,
  frobeniusNorm,
  identity,
  matmul,
  matrix,
  maxAbs,
  shermanMorrison64,
  transpose,
} from '@mkor/testing';

/** One dense layer in the authors' layout. */
export interface Layer64 {
  weight: Matrix64; // [out, in]
  bias: Float64Array; // [out]
}

/** The authors' MKOR state for the two layers, plus torch SGD's momentum buffers. */
export interface AuthorsMkor64 {
  steps: number;
  aaInverse: (Matrix64 | null)[];
  ggInverse: (Matrix64 | null)[];
  aReset: boolean[];
  gReset: boolean[];
  momentum: ({ weight: Matrix64; bias: Float64Array } | null)[];
}

export function initAuthorsMkor64(): AuthorsMkor64 {
  return { steps: 0, aaInverse: [null, null], ggInverse: [null, null], aReset: [true, true], gReset: [true, true], momentum: [null, null] };
}

/** x `[b, in]` times Wᵀ plus b → `[b, out]`. */
function affine(x: Matrix64, layer: Layer64): Matrix64 {
  const z = matmul(x, transpose(layer.weight));
  for (let i = 0; i < z.rows; i++) for (let j = 0; j < z.cols; j++) z.data[i * z.cols + j] = (z.data[i * z.cols + j] as number) + (layer.bias[j] as number);
  return z;
}

/** Mean over rows of `[row, 1]` (the bias column appended), each entry clamped to ±clip. */
function meanWithOne(x: Matrix64, clip: number): Float64Array {
  const out = new Float64Array(x.cols + 1);
  for (let i = 0; i < x.rows; i++) for (let j = 0; j < x.cols; j++) out[j] = (out[j] as number) + Math.max(-clip, Math.min(clip, x.data[i * x.cols + j] as number)) / x.rows;
  out[x.cols] = 1;
  return out;
}

/** Mean over rows of `n·row` clamped to ±clip (the authors' g: the row sum of a mean-reduced loss). */
function scaledMean(g: Matrix64, clip: number): Float64Array {
  const n = g.rows;
  const out = new Float64Array(g.cols);
  for (let i = 0; i < n; i++) for (let j = 0; j < g.cols; j++) out[j] = (out[j] as number) + Math.max(-clip, Math.min(clip, n * (g.data[i * g.cols + j] as number))) / n;
  return out;
}

/**
 * One training step of the authors' MKOR with a torch-SGD backend (momentum μ, no dampening) on
 * `loss = mean((MLP(x) − y)²)`; returns the loss before the step. Mutates `layers` and `state`.
 */
export function authorsMkorStep64(
  layers: [Layer64, Layer64],
  state: AuthorsMkor64,
  x: Matrix64,
  y: Matrix64,
  options: { learningRate: number; momentum: number; invFreq: number; warmupSteps: number; clip?: number },
): number {
  const clip = options.clip ?? 100;
  const [l1, l2] = layers;
  // Forward.
  const z1 = affine(x, l1);
  const h1 = matrix(z1.rows, z1.cols, z1.data.map((v) => Math.max(0, v)));
  const z2 = affine(h1, l2);
  const count = z2.rows * z2.cols;
  let loss = 0;
  const dz2 = matrix(z2.rows, z2.cols);
  for (let i = 0; i < count; i++) {
    const diff = (z2.data[i] as number) - (y.data[i] as number);
    loss += (diff * diff) / count;
    dz2.data[i] = (2 * diff) / count;
  }
  // Backward.
  const dh1 = matmul(dz2, l2.weight);
  const dz1 = matrix(dh1.rows, dh1.cols, dh1.data.map((v, i) => ((z1.data[i] as number) > 0 ? v : 0)));
  const inputs = [x, h1];
  const outGrads = [dz1, dz2];
  const grads = layers.map((_, m) => {
    const g = outGrads[m] as Matrix64;
    const weight = matmul(transpose(g), inputs[m] as Matrix64); // [out, in]
    const bias = new Float64Array(g.cols);
    for (let i = 0; i < g.rows; i++) for (let j = 0; j < g.cols; j++) bias[j] = (bias[j] as number) + (g.data[i * g.cols + j] as number);
    return { weight, bias };
  });

  // Factor update on `steps % f == 0 || steps < warmup`: all AA⁻¹ first, then all GG⁻¹.
  if (state.steps % options.invFreq === 0 || state.steps < options.warmupSteps) {
    const vectors = {
      a: layers.map((_, m) => meanWithOne(inputs[m] as Matrix64, clip)),
      g: layers.map((_, m) => scaledMean(outGrads[m] as Matrix64, clip)),
    };
    for (const side of ['a', 'g'] as const) {
      const factors = side === 'a' ? state.aaInverse : state.ggInverse;
      const flags = side === 'a' ? state.aReset : state.gReset;
      layers.forEach((_, m) => {
        const v = vectors[side][m] as Float64Array;
        if (flags[m]) {
          factors[m] = identity(v.length);
          flags[m] = false;
        } else {
          const blended = combine(0.95, factors[m] as Matrix64, 0.05, identity(v.length));
          factors[m] = shermanMorrison64(blended, v, 1, 1);
          if (maxAbs(factors[m] as Matrix64) > 2) {
            state.aReset[m] = true;
            state.gReset[m] = true;
          }
        }
      });
    }
  }

  // Precondition GG⁻¹ [∇W | ∇b] AA⁻¹, rescale by summed norms, then torch SGD with momentum.
  layers.forEach((layer, m) => {
    const g = grads[m] as { weight: Matrix64; bias: Float64Array };
    const out = layer.weight.rows;
    const inp = layer.weight.cols;
    const extended = matrix(out, inp + 1);
    for (let i = 0; i < out; i++) {
      for (let j = 0; j < inp; j++) extended.data[i * (inp + 1) + j] = g.weight.data[i * inp + j] as number;
      extended.data[i * (inp + 1) + inp] = g.bias[i] as number;
    }
    const pre = matmul(matmul(state.ggInverse[m] as Matrix64, extended), state.aaInverse[m] as Matrix64);
    const preWeight = matrix(out, inp);
    const preBias = new Float64Array(out);
    for (let i = 0; i < out; i++) {
      for (let j = 0; j < inp; j++) preWeight.data[i * inp + j] = pre.data[i * (inp + 1) + j] as number;
      preBias[i] = pre.data[i * (inp + 1) + inp] as number;
    }
    const norm = (v: Float64Array) => Math.sqrt(v.reduce((s, t) => s + t * t, 0));
    const nu = (frobeniusNorm(g.weight) + norm(g.bias)) / (frobeniusNorm(preWeight) + norm(preBias));
    const stepWeight = Number.isNaN(nu) ? g.weight : combine(nu, preWeight, 0, preWeight);
    const stepBias = Number.isNaN(nu) ? g.bias : preBias.map((v) => v * nu);
    const previous = state.momentum[m];
    const buffer = previous === null || previous === undefined
      ? { weight: stepWeight, bias: Float64Array.from(stepBias) }
      : { weight: combine(options.momentum, previous.weight, 1, stepWeight), bias: previous.bias.map((v, i) => options.momentum * v + (stepBias[i] as number)) };
    state.momentum[m] = buffer;
    layer.weight = combine(1, layer.weight, -options.learningRate, buffer.weight);
    layer.bias = layer.bias.map((v, i) => v - options.learningRate * (buffer.bias[i] as number));
  });
  state.steps += 1;
  return loss;
}
