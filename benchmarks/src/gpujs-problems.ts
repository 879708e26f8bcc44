/**
 * The problems of benchmark `gpujs` (`gpujs.ts`), built the same way in Node and in the Chromium
 * page (`gpujs-page.ts`) from seeds, so only their indices cross between the two.
 */
import type { Float32Matrix, InverseFactor, LowRankFactor, MkorKernels } from '@mkor/gpujs-kernels';
import { type InverseFactor as TensorFactor, applyInverseFactor, updateInverseFactor } from '@mkor/sherman-morrison';
import * as tf from '@tensorflow/tfjs-core';

/** An implementation slower than this (ms) at one size is not run at sizes its growth puts above it. */
export const BUDGET_MS = 3000;

/** The rank of the low-rank factors (as MKOR's `factors: 'auto'`). */
export const RANK = 32;

/** One operation on one problem: the typed-array inputs. */
export interface Problem {
  readonly label: string;
  /** Work units for the budget's extrapolation: d² for a refresh, d³ for a product. */
  readonly work: number;
  /** Refreshes: each factor and its v. */
  readonly refresh: readonly { readonly inverse: Float32Matrix; readonly v: Float32Array }[];
  /** Preconditionings: each pair of factors and its G. */
  readonly precondition: readonly { readonly input: InverseFactor; readonly gradient: Float32Matrix; readonly output: InverseFactor }[];
}

/** A problem before its data is built. */
export interface ProblemSpec {
  readonly label: string;
  readonly work: number;
  build(): Problem;
}

/** The problems of one operation, smallest first. */
export interface Operation {
  readonly name: string;
  readonly problems: readonly ProblemSpec[];
}

/** Deterministic values in [-1, 1) (a linear congruential generator). */
function filled(length: number, seed: number): Float32Array {
  let state = seed >>> 0;
  return Float32Array.from({ length }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 31 - 1;
  });
}

/** A symmetric, diagonally dominant (so positive-definite) d × d matrix. */
function denseFactor(d: number, seed: number): Float32Matrix {
  const values = filled(d * d, seed);
  const data = new Float32Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j <= i; j++) {
      const value = i === j ? 1 : (values[i * d + j] as number) / d;
      data[i * d + j] = value;
      data[j * d + i] = value;
    }
  }
  return { rows: d, columns: d, data };
}

/** `0.9·I + U·diag(m)·Uᵀ` of rank {@link RANK}, negative weights as MKOR's exact form makes them. */
function lowRankFactor(d: number, seed: number): LowRankFactor {
  return {
    scale: 0.9,
    basis: { rows: d, columns: RANK, data: filled(d * RANK, seed).map((x) => x / Math.sqrt(d)) },
    weights: filled(RANK, seed + 1).map((x) => -0.1 + 0.05 * x),
  };
}

/**
 * The benchmark's operations: the exact-form refresh of a dense factor, dense and low-rank
 * preconditioning, each at d = 128 … 2048 (G d × d) and for the layers of the 784-512-512-10 MLP
 * (bias folded in). Data is built lazily, one problem at a time.
 */
export function operations(smoke: boolean): Operation[] {
  const sizes = smoke ? [16, 48] : [128, 256, 512, 1024, 2048];
  const layers: readonly (readonly [number, number])[] = smoke
    ? [
        [17, 8],
        [9, 3],
      ]
    : [
        [785, 512],
        [513, 512],
        [513, 10],
      ];
  const refreshes: Operation = {
    name: 'refresh of a dense factor (exact form)',
    problems: [
      ...sizes.map((d): ProblemSpec => ({ label: `d = ${d}`, work: d * d, build: () => ({ label: `d = ${d}`, work: d * d, refresh: [{ inverse: denseFactor(d, d), v: filled(d, d + 1) }], precondition: [] }) })),
      ((): ProblemSpec => {
        const label = `MLP: ${layers.flatMap(([input, output]) => [input, output]).join(', ')}`;
        const work = layers.reduce((sum, [input, output]) => sum + input * input + output * output, 0);
        return {
          label,
          work,
          build: () => ({
            label,
            work,
            refresh: layers.flatMap(([input, output], i) => [
              { inverse: denseFactor(input, 10 * i), v: filled(input, 10 * i + 1) },
              { inverse: denseFactor(output, 10 * i + 2), v: filled(output, 10 * i + 3) },
            ]),
            precondition: [],
          }),
        };
      })(),
    ],
  };
  const preconditionings = (['dense', 'low-rank'] as const).map((kind) => {
    const factor = (d: number, seed: number): InverseFactor => (kind === 'dense' ? denseFactor(d, seed) : lowRankFactor(d, seed));
    const workOf = (input: number, output: number): number => (kind === 'dense' ? input * output * (input + output) : input * output * RANK);
    const problem = (label: string, shapes: readonly (readonly [number, number])[]): ProblemSpec => {
      const work = shapes.reduce((sum, [input, output]) => sum + workOf(input, output), 0);
      return {
        label,
        work,
        build: (): Problem => ({
          label,
          work,
          refresh: [],
          precondition: shapes.map(([input, output], i) => ({
            input: factor(input, 20 * i + input),
            gradient: { rows: input, columns: output, data: filled(input * output, 20 * i + 1) },
            output: factor(output, 20 * i + output + 2),
          })),
        }),
      };
    };
    return {
      name: kind === 'dense' ? 'dense preconditioning R⁻¹·G·L⁻¹' : `low-rank preconditioning (rank ${RANK} on both sides)`,
      problems: [...sizes.map((d) => problem(`d = ${d}`, [[d, d]])), problem(`MLP: ${layers.map(([input, output]) => `${input}×${output}`).join(', ')}`, layers)],
    };
  });
  return [refreshes, ...preconditionings];
}

/** ‖a − b‖_F / ‖b‖_F over a list of results. */
export function relativeDifference(results: readonly Float32Array[], reference: readonly Float32Array[]): number {
  let difference = 0;
  let size = 0;
  reference.forEach((expected, k) => {
    const result = results[k] ?? new Float32Array(expected.length).fill(Number.NaN);
    for (let i = 0; i < expected.length; i++) {
      difference += ((result[i] as number) - (expected[i] as number)) ** 2;
      size += (expected[i] as number) ** 2;
    }
  });
  return Math.sqrt(difference / size);
}

/** Whether an implementation whose slowest call so far took `slowest.ms` on `slowest.work` would exceed {@link BUDGET_MS} on `work`. */
export function overBudget(slowest: { readonly ms: number; readonly work: number } | undefined, work: number): boolean {
  return slowest !== undefined && slowest.ms > BUDGET_MS && (slowest.ms * work) / slowest.work > BUDGET_MS;
}

/** A problem made ready for one implementation: the timed call, its latest results, and the clean-up. */
export interface PreparedProblem {
  run(): void;
  results(): Float32Array[];
  dispose(): void;
}

/** The problem with `@mkor/gpujs-kernels` (finite checks off, as tfjs's ops check nothing). */
export function prepareGpujs(kernels: MkorKernels, problem: Problem): PreparedProblem {
  let results: Float32Array[] = [];
  const run = (): void => {
    results = [
      ...problem.refresh.map(({ inverse, v }) => kernels.refreshInverse(inverse, v, { form: 'exact', gamma: 0.95, checkFinite: false }).data),
      ...problem.precondition.map(({ input, gradient, output }) => kernels.precondition(input, gradient, output, { checkFinite: false }).data),
    ];
  };
  return { run, results: () => results, dispose: () => undefined };
}

const toTensorFactor = (factor: InverseFactor): TensorFactor =>
  'basis' in factor
    ? { scale: tf.scalar(factor.scale), basis: tf.tensor2d(factor.basis.data, [factor.basis.rows, factor.basis.columns]), weights: tf.tensor1d(factor.weights) }
    : tf.tensor2d(factor.data, [factor.rows, factor.columns]);

/**
 * The problem with tfjs's ops on the current backend: inputs uploaded once; each call runs
 * `updateInverseFactor` / `applyInverseFactor` on both sides and waits for the results (one
 * element of each read back).
 */
export function prepareTfjs(problem: Problem): PreparedProblem {
  const refresh = problem.refresh.map(({ inverse, v }) => ({ inverse: tf.tensor2d(inverse.data, [inverse.rows, inverse.columns]), v: tf.tensor1d(v) }));
  const precondition = problem.precondition.map(({ input, gradient, output }) => ({
    input: toTensorFactor(input),
    gradient: tf.tensor2d(gradient.data, [gradient.rows, gradient.columns]),
    output: toTensorFactor(output),
  }));
  let outputs: tf.Tensor[] = [];
  const run = (): void => {
    tf.dispose(outputs);
    outputs = [
      ...refresh.map(({ inverse, v }) => updateInverseFactor(inverse, v, { form: 'exact', gamma: 0.95, checkFinite: false })),
      ...precondition.map(({ input, gradient, output }) => tf.tidy(() => applyInverseFactor(output, applyInverseFactor(input, gradient, 'left'), 'right'))),
    ];
    for (const output of outputs) {
      const first = tf.slice(output, [0, 0], [1, 1]);
      first.dataSync();
      first.dispose();
    }
  };
  return {
    run,
    results: () => outputs.map((output) => output.dataSync() as Float32Array),
    dispose: () => tf.dispose([outputs, refresh, precondition] as unknown as tf.TensorContainer),
  };
}
