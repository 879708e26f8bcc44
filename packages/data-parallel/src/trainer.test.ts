import { LAYOUT_CHECK_ELEMENTS, createSimulatedGroup } from '@mkor/allreduce';
import type { CollectiveOptions, SimulatedTransport, Transport } from '@mkor/allreduce';
import type { LayerStatistics } from '@mkor/capture';
import { TransformOptimizer, type UpdateContext } from '@mkor/core';
import { loadFashionMnist } from '@mkor/datasets';
import { adam } from '@mkor/first-order';
import { KfacOptimizer } from '@mkor/kfac';
import { MkorOptimizer } from '@mkor/mkor';
import { allReduce64, allReduceErrorBound64 } from '@mkor/testing';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';

import { crossEntropy, mlp, rowsOf, trainableVariables, trajectoryDistance, weightsOf } from '../test/fixtures';
import { DataParallelTrainer } from './index';
import type { DataParallelOptimizer } from './index';

/** Ranks, full batch, steps: the trainer's equivalence runs. */
const RANKS = 4;
const BATCH = 64;
const STEPS = 12;
const data = loadFashionMnist({ trainLimit: BATCH * STEPS, testLimit: 1 });

/** A transport that records the length of every all-reduce, around another. */
function counting(inner: Transport): Transport & { lengths: number[]; precisions: string[] } {
  const lengths: number[] = [];
  const precisions: string[] = [];
  return {
    rank: inner.rank,
    worldSize: inner.worldSize,
    lengths,
    precisions,
    allReduce: (buffer: Float32Array, options?: CollectiveOptions) => {
      lengths.push(buffer.length);
      precisions.push(options?.precision ?? 'float32');
      return inner.allReduce(buffer, options);
    },
    broadcast: (buffer, root, options) => inner.broadcast(buffer, root, options),
    barrier: (options) => inner.barrier(options),
    close: () => inner.close(),
  };
}

/** A trainable float32 variable of zeros (the initial tensor is freed: `tf.variable` keeps its own reference). */
function zerosVariable(shape: number[], name: string): tf.Variable {
  return tf.tidy(() => tf.variable(tf.zeros(shape), true, name));
}

/** Deterministic values in (−1, 1) (plus `scale` spread) for rank `rank`, vector `salt`. */
function values(length: number, rank: number, salt: number, scale = 1): Float32Array {
  return Float32Array.from({ length }, (_, i) => Math.sin(1 + 3 * i + 17 * salt + 101 * rank) * scale);
}

/** What a recording optimizer saw in one `applyGradientsWithContext` call, copied to the host. */
interface Recorded {
  readonly gradients: Record<string, Float32Array>;
  readonly loss: number | undefined;
  readonly statistics: Record<string, { a: Float32Array; g: Float32Array; rows: number; samples: number; step: number; covariance?: [Float32Array, Float32Array] } | undefined>;
}

/**
 * A stand-in optimizer with a hand-made capture: layer 'dense' (a: 3, g: 2) and layer 'wide'
 * (a: 2, g: 4, with covariances), whose statistics the test sets per rank. It computes gradients
 * as `tf.Optimizer` does and records what the trainer hands it.
 */
function recordingOptimizer(rank: number) {
  const recorded: Recorded[] = [];
  const owned: tf.Tensor[] = [];
  const statistics = new Map<string, LayerStatistics>();
  const keep = <T extends tf.Tensor>(t: T): T => {
    owned.push(t);
    return t;
  };
  const optimizer: DataParallelOptimizer = {
    computeGradients: (f, varList) => tf.variableGrads(f, varList),
    applyGradientsWithContext: (gradients: tf.NamedTensorMap, context: Omit<UpdateContext, 'params'>) => {
      const stats = (context.extras?.statistics ?? {}) as Record<string, LayerStatistics | undefined>;
      recorded.push({
        gradients: Object.fromEntries(Object.entries(gradients).map(([name, t]) => [name, t.dataSync() as Float32Array])),
        loss: context.loss,
        statistics: Object.fromEntries(
          Object.entries(stats).map(([name, s]) => [
            name,
            s === undefined
              ? undefined
              : {
                  a: s.a.dataSync() as Float32Array,
                  g: s.g.dataSync() as Float32Array,
                  rows: s.rows,
                  samples: s.samples,
                  step: s.step,
                  ...(s.covariance ? { covariance: [s.covariance.a.dataSync(), s.covariance.g.dataSync()] as [Float32Array, Float32Array] } : {}),
                },
          ]),
        ),
      });
    },
    capture: {
      secondOrder: [
        { name: `dense-${rank}`, kind: 'dense', gradientCount: 'rows', kernelName: 'k', inputDim: 3, outputDim: 2, kernelShape: [3, 2] },
        { name: `wide-${rank}`, kind: 'dense', gradientCount: 'rows', kernelName: 'k2', inputDim: 2, outputDim: 4, kernelShape: [2, 4] },
      ],
      statistics: (name) => statistics.get(name),
    },
  };
  const commit = (layer: string, step: number, rows: number, withCovariance: boolean) => {
    const [inputDim, outputDim] = layer.startsWith('dense') ? [3, 2] : [2, 4];
    statistics.set(layer, {
      a: keep(tf.tensor1d(values(inputDim, rank, step))),
      g: keep(tf.tensor1d(values(outputDim, rank, step + 50, 1e-3))),
      rows,
      samples: rows,
      step,
      ...(withCovariance
        ? {
            covariance: {
              a: keep(tf.tensor2d(values(inputDim * inputDim, rank, step + 100), [inputDim, inputDim])),
              g: keep(tf.tensor2d(values(outputDim * outputDim, rank, step + 150, 1e-4), [outputDim, outputDim])),
            },
          }
        : {}),
    });
  };
  return { optimizer, recorded, commit, dispose: () => tf.dispose(owned) };
}

/** Expects `got` to be the float64 mean of `contributions` within the all-reduce's rounding bound. */
function expectMean(got: Float32Array, contributions: Float32Array[], precision: 'float32' | 'float16' = 'float32'): void {
  const exact = allReduce64(contributions, 'mean', precision === 'float16' ? 'float16' : 'float32');
  const bound = allReduceErrorBound64(contributions, 'mean', precision);
  expect(got.length).toBe(exact.length);
  got.forEach((x, i) => expect(Math.abs(x - (exact[i] as number))).toBeLessThanOrEqual(bound[i] as number));
}

describe('DataParallelTrainer.step: what reaches the optimizer', () => {
  for (const precision of ['float32', 'float16'] as const) {
    it(`the float64 mean of gradients, loss and fresh statistics (${precision} statistics), local rows, in one or two messages`, async () => {
      const before = tf.memory().numTensors;
      const group = createSimulatedGroup(3).map(counting);
      const ranks = group.map((transport, rank) => {
        const weight = zerosVariable([2, 3], `w-${precision}-${rank}`);
        const bias = zerosVariable([4], `b-${precision}-${rank}`);
        const recorder = recordingOptimizer(rank);
        const trainer = new DataParallelTrainer({ optimizer: recorder.optimizer, transport, precision, variables: [weight, bias] });
        return { weight, bias, recorder, trainer };
      });
      const coefficients = ranks.map((_, rank) => [values(6, rank, 7), values(4, rank, 8)] as const);
      const lossOf = (rank: number) => () => {
        const { weight, bias } = ranks[rank]!;
        const [w, b] = coefficients[rank]!;
        return tf.add(tf.sum(tf.mul(weight, tf.tensor2d(w, [2, 3]))), tf.add(tf.sum(tf.mul(bias, tf.tensor1d(b))), rank)) as tf.Scalar;
      };
      // Step 1: both layers fresh, 'wide' with covariances; rows differ by rank (kept local).
      ranks.forEach(({ recorder }, rank) => {
        recorder.commit(`dense-${rank}`, 1, 10 + rank, false);
        recorder.commit(`wide-${rank}`, 1, 20 + rank, true);
      });
      const losses = await Promise.all(ranks.map(({ trainer }, rank) => trainer.step(lossOf(rank))));
      // Σ w·c + Σ b·c + rank with zero weights: the mean loss is the mean of the ranks, 1.
      expect(losses).toEqual([1, 1, 1]);
      for (const [rank, { recorder, weight, bias }] of ranks.entries()) {
        const [seen] = recorder.recorded as [Recorded];
        expect(seen.loss).toBe(1);
        expectMean(seen.gradients[weight.name]!, coefficients.map(([w]) => w));
        expectMean(seen.gradients[bias.name]!, coefficients.map(([, b]) => b));
        const dense = seen.statistics[`dense-${rank}`]!;
        expectMean(dense.a, ranks.map((_, r) => values(3, r, 1)), precision);
        expectMean(dense.g, ranks.map((_, r) => values(2, r, 51, 1e-3)), precision);
        expect([dense.rows, dense.samples, dense.step, dense.covariance]).toEqual([10 + rank, 10 + rank, 1, undefined]);
        const wide = seen.statistics[`wide-${rank}`]!;
        expect([wide.rows, wide.step]).toEqual([20 + rank, 1]);
        expectMean(wide.covariance![0], ranks.map((_, r) => values(4, r, 101)), precision);
        expectMean(wide.covariance![1], ranks.map((_, r) => values(16, r, 151, 1e-4)), precision);
      }
      // Step 2: only 'wide' committed new statistics; 'dense' is stale and neither sent nor handed on.
      ranks.forEach(({ recorder }, rank) => recorder.commit(`wide-${rank}`, 2, 20, false));
      await Promise.all(ranks.map(({ trainer }, rank) => trainer.step(lossOf(rank))));
      for (const [rank, { recorder }] of ranks.entries()) {
        const seen = recorder.recorded[1]!;
        expect(Object.keys(seen.statistics).sort()).toEqual([`dense-${rank}`, `wide-${rank}`]);
        expect(seen.statistics[`dense-${rank}`]).toBeUndefined();
        expectMean(seen.statistics[`wide-${rank}`]!.a, ranks.map((_, r) => values(2, r, 2)), precision);
      }
      // Messages: loss 1 + gradients 6 + 4; statistics 3 + 2 + 2 + 4 + 4 + 16, then 2 + 4.
      const expected =
        precision === 'float32'
          ? [LAYOUT_CHECK_ELEMENTS + 11 + 31, LAYOUT_CHECK_ELEMENTS + 11 + 6]
          : [LAYOUT_CHECK_ELEMENTS + 11, LAYOUT_CHECK_ELEMENTS + 31, LAYOUT_CHECK_ELEMENTS + 11, LAYOUT_CHECK_ELEMENTS + 6];
      for (const transport of group) expect(transport.lengths).toEqual(expected);
      expect(group[0]!.precisions).toEqual(precision === 'float32' ? ['float32', 'float32'] : ['float32', 'float16', 'float32', 'float16']);
      for (const { recorder, weight, bias, trainer } of ranks) {
        expect(trainer.steps).toBe(2);
        recorder.dispose();
        tf.dispose([weight, bias]);
      }
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('takes its statistics source explicitly (default: optimizer.capture) and refuses one lacking secondOrder or statistics', async () => {
    const before = tf.memory().numTensors;
    const group = createSimulatedGroup(2).map(counting);
    const ranks = group.map((transport, rank) => {
      const weight = zerosVariable([3], `explicit-source-${rank}`);
      const recorder = recordingOptimizer(rank);
      // The optimizer has no capture of its own: the statistics come only from the option.
      const { computeGradients, applyGradientsWithContext } = recorder.optimizer;
      const source = recorder.optimizer.capture!;
      const trainer = new DataParallelTrainer({ optimizer: { computeGradients, applyGradientsWithContext }, transport, statistics: source, variables: [weight] });
      expect(trainer.statistics).toBe(source);
      expect(new DataParallelTrainer({ optimizer: recorder.optimizer, transport }).statistics).toBe(source);
      expect(new DataParallelTrainer({ optimizer: { computeGradients, applyGradientsWithContext }, transport }).statistics).toBeUndefined();
      return { weight, recorder, trainer };
    });
    ranks.forEach(({ recorder }, rank) => recorder.commit(`dense-${rank}`, 1, 8, false));
    await Promise.all(ranks.map(({ trainer, weight }, rank) => trainer.step(() => tf.sum(tf.mul(weight, tf.tensor1d(values(3, rank, 9)))))));
    for (const [rank, { recorder }] of ranks.entries()) {
      const [seen] = recorder.recorded as [Recorded];
      expect(Object.keys(seen.statistics).sort()).toEqual([`dense-${rank}`, `wide-${rank}`]);
      expectMean(seen.statistics[`dense-${rank}`]!.a, ranks.map((_, r) => values(3, r, 1)));
      expectMean(seen.statistics[`dense-${rank}`]!.g, ranks.map((_, r) => values(2, r, 51, 1e-3)));
    }
    // Loss 1 + gradient 3, statistics a 3 + g 2.
    for (const transport of group) expect(transport.lengths).toEqual([LAYOUT_CHECK_ELEMENTS + 4 + 5]);

    const transport = group[0]!;
    const { optimizer } = ranks[0]!.recorder;
    const make = (options: object) => () => new DataParallelTrainer({ optimizer, transport, ...options } as never);
    const lacking = /^DataParallelTrainer: statistics must be a statistics source with secondOrder and statistics\(layerName\)/;
    expect(make({ statistics: {} })).toThrow(new RegExp(`${lacking.source}.*; it lacks secondOrder and statistics\\(layerName\\)$`));
    expect(make({ statistics: { secondOrder: [] } })).toThrow(/it lacks statistics\(layerName\)$/);
    expect(make({ statistics: null })).toThrow(/^DataParallelTrainer: statistics must be a statistics source \(a CaptureRegistry such as optimizer.capture\), got null$/);
    const brokenCapture = { ...optimizer, capture: { statistics: () => undefined } };
    expect(make({ optimizer: brokenCapture })).toThrow(/^DataParallelTrainer: optimizer\.capture \(the default statistics source\) must be .* it lacks secondOrder$/);
    for (const { recorder, weight } of ranks) {
      recorder.dispose();
      weight.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('cuts the message into buckets of at most bucketBytes; without a capture, float16 changes nothing', async () => {
    const group = createSimulatedGroup(2).map(counting);
    const variables = group.map((_, rank) => zerosVariable([1000], `bucketed-${rank}`));
    const trainers = group.map(
      (transport, rank) =>
        new DataParallelTrainer({
          optimizer: { computeGradients: (f, v) => tf.variableGrads(f, v), applyGradientsWithContext: () => undefined },
          transport,
          variables: [variables[rank]!],
          bucketBytes: 1024,
          precision: 'float16',
        }),
    );
    const before = tf.memory().numTensors;
    await Promise.all(trainers.map((trainer, rank) => trainer.step(() => tf.sum(tf.mul(variables[rank]!, rank)))));
    expect(tf.memory().numTensors).toBe(before);
    const total = LAYOUT_CHECK_ELEMENTS + 1 + 1000;
    expect(group[0]!.lengths).toEqual([256, 256, 256, 256, total - 1024]);
    expect(new Set(group[0]!.precisions)).toEqual(new Set(['float32']));
    tf.dispose(variables);
  });
});

/**
 * The control of the equivalence tests: hands the optimizer the global row and sample counts (N
 * times the local ones) instead of the local ones the trainer keeps.
 */
function withGlobalRows(optimizer: DataParallelOptimizer): DataParallelOptimizer {
  return {
    computeGradients: (f, varList) => optimizer.computeGradients(f, varList),
    applyGradientsWithContext: (gradients, context) => {
      const statistics = context.extras?.statistics as Record<string, LayerStatistics>;
      const global = Object.fromEntries(
        Object.entries(statistics).map(([name, s]) => [name, { ...s, rows: s.rows * RANKS, samples: s.samples * RANKS }]),
      );
      optimizer.applyGradientsWithContext(gradients, { ...context, extras: { statistics: global } });
    },
    ...(optimizer.capture === undefined ? {} : { capture: optimizer.capture }),
  };
}

/** An optimizer the trainer drives that can also train alone (`minimize`) and be disposed. */
type TrainableOptimizer = DataParallelOptimizer & Pick<tf.Optimizer, 'minimize' | 'dispose'>;

/** One replica per rank plus one single-process model, all from `seed`, and the weights they start from. */
interface EquivalenceRun {
  readonly single: tfl.Sequential;
  readonly replicas: tfl.Sequential[];
  readonly origin: Float32Array[];
}

/**
 * Trains one model on the full batch (`optimizer.minimize`) and `RANKS` replicas, each on its
 * quarter, through `DataParallelTrainer`s on a simulated group, for `STEPS` steps of `BATCH`
 * Fashion-MNIST images. `makeOptimizer` builds each optimizer; `wrap` may alter a replica's.
 */
async function trainBothWays(
  makeOptimizer: (model: tfl.Sequential) => TrainableOptimizer,
  precision: 'float32' | 'float16',
  wrap: (optimizer: DataParallelOptimizer) => DataParallelOptimizer = (o) => o,
): Promise<EquivalenceRun & { dispose: () => void; tensorsAfterStep: number[] }> {
  const single = mlp(7);
  const singleOptimizer = makeOptimizer(single);
  const replicas = Array.from({ length: RANKS }, () => mlp(7));
  const optimizers = replicas.map(makeOptimizer);
  const group = createSimulatedGroup(RANKS);
  const trainers = replicas.map(
    (model, rank) =>
      new DataParallelTrainer({ optimizer: wrap(optimizers[rank]!), transport: group[rank]!, precision, variables: trainableVariables(model) }),
  );
  const origin = weightsOf(single);
  const shard = BATCH / RANKS;
  const tensorsAfterStep: number[] = [];
  for (let step = 0; step < STEPS; step++) {
    const full = rowsOf(data.train, step * BATCH, BATCH);
    singleOptimizer.minimize(crossEntropy(single, full));
    const shards = replicas.map((_, rank) => rowsOf(data.train, step * BATCH + rank * shard, shard));
    const losses = await Promise.all(trainers.map((trainer, rank) => trainer.step(crossEntropy(replicas[rank]!, shards[rank]!))));
    expect(new Set(losses).size).toBe(1);
    tf.dispose([full.x, full.y, ...shards.flatMap((s) => [s.x, s.y])]);
    tensorsAfterStep.push(tf.memory().numTensors);
  }
  return {
    single,
    replicas,
    origin,
    tensorsAfterStep,
    dispose: () => {
      for (const optimizer of [singleOptimizer, ...optimizers]) optimizer.dispose();
      for (const model of [single, ...replicas]) model.dispose();
    },
  };
}

/**
 * Tolerances of the equivalence, as ‖W_parallel − W_single‖_F / ‖W_single − W_0‖_F after 12 steps
 * (and the largest absolute difference for float32):
 * - float32: both runs compute the same quantities with float32 sums in a different order (a
 *   16-row sum then a 4-rank mean, against one 64-row sum), so every step's inputs differ by a few
 *   units of float32 roundoff u = 2⁻²⁴ ≈ 6e-8 relative; Adam and MKOR's rescale keep that
 *   relative. Observed: ≈ 4e-7 relative, ≈ 2e-7 absolute (weights ≈ 0.1); allowed: 1e-5 relative
 *   (≈ 170 u) and 2e-6 absolute.
 * - float16 statistics: each rank's `a` and `g` are rounded to float16 (u₁₆ = 2⁻¹¹ ≈ 4.9e-4)
 *   before the sum. Observed ≈ 2.5e-3 relative (≈ 5 u₁₆); allowed 1e-2.
 * - A control that the check can fail: handing MKOR the global row count B instead of the local
 *   B/N (so it folds N·B·g_full into L⁻¹) moves the trajectory by ≈ 5e-2 relative.
 */
const FLOAT32_RELATIVE = 1e-5;
const FLOAT32_ABSOLUTE = 2e-6;
const FLOAT16_RELATIVE = 1e-2;
/**
 * KFAC's tolerance, and its options. KFAC amplifies float32 rounding far more than MKOR, in one
 * process as well, so the test measures that noise: the single run again with each batch's rows
 * reversed (the same loss and statistics, summed in another order). With the default damping
 * (λ = 1e-3) inversions fail on rounding on this MLP and fall back to the previous inverse: the
 * reversed run then differs by ≈ 3e-3 relative on wasm and by ≈ 1.3 (a different trajectory) on
 * cpu, which no tolerance can bound — hence λ = 0.1 here, where no inversion fails. With it the
 * reversed run differs by ≈ 2e-5 (cpu) and ≈ 2.3e-3 (wasm: float32 noise of the Cholesky inverses
 * where the exact preconditioned gradient is 0 — weights of always-black pixels — becomes steps of
 * about ±lr under Adam's per-coordinate normalisation), and the parallel run by ≈ 2.5e-5 (cpu) and
 * ≈ 3.3e-3 (wasm). Allowed: 1e-2, and at most 4× the measured noise. The control (global row
 * counts, so G is off by N²) differs by more than 0.1.
 */
const KFAC_RELATIVE = 1e-2;
const KFAC_OPTIONS = { damping: 0.1 };

describe('DataParallelTrainer: 4 ranks with batch B/4 follow 1 process with batch B', () => {
  it('MKOR (default options, gradientScale sum), float32: weights agree to float32 rounding, and no tensor leaks', async () => {
    const before = tf.memory().numTensors;
    const run = await trainBothWays((model) => new MkorOptimizer(model), 'float32');
    const reference = weightsOf(run.single);
    for (const replica of run.replicas) {
      const distance = trajectoryDistance(weightsOf(replica), reference, run.origin);
      expect(distance.relative).toBeLessThanOrEqual(FLOAT32_RELATIVE);
      expect(distance.maxAbs).toBeLessThanOrEqual(FLOAT32_ABSOLUTE);
    }
    // Flat from the second step on (the first creates the optimizers' state).
    expect(new Set(run.tensorsAfterStep.slice(1)).size).toBe(1);
    run.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('MKOR with float16 statistics on the wire: agreement within float16 rounding', async () => {
    const before = tf.memory().numTensors;
    const run = await trainBothWays((model) => new MkorOptimizer(model), 'float16');
    const reference = weightsOf(run.single);
    for (const replica of run.replicas) {
      expect(trajectoryDistance(weightsOf(replica), reference, run.origin).relative).toBeLessThanOrEqual(FLOAT16_RELATIVE);
    }
    run.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('control: with the global row count instead of the local one, the trajectories part visibly', async () => {
    const before = tf.memory().numTensors;
    const run = await trainBothWays((model) => new MkorOptimizer(model), 'float32', withGlobalRows);
    const distance = trajectoryDistance(weightsOf(run.replicas[0]!), weightsOf(run.single), run.origin);
    // Far outside both tolerances: even the float16 one would catch this mistake.
    expect(distance.relative).toBeGreaterThan(2 * FLOAT16_RELATIVE);
    run.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('KFAC (damping 0.1, covariances all-reduced): the parallel run stays within the single run’s own float32 noise', async () => {
    const before = tf.memory().numTensors;
    const run = await trainBothWays((model) => new KfacOptimizer(model, KFAC_OPTIONS), 'float32');
    const reference = weightsOf(run.single);
    // KFAC's own sensitivity to float32 rounding: the same single-process run with each batch's
    // rows in reverse order (the same loss and statistics, summed in another order).
    const reversed = mlp(7);
    const reversedOptimizer = new KfacOptimizer(reversed, KFAC_OPTIONS);
    for (let step = 0; step < STEPS; step++) {
      const batch = rowsOf(data.train, step * BATCH, BATCH);
      const flipped = tf.tidy(() => ({ x: tf.reverse(batch.x, 0) as tf.Tensor2D, y: tf.reverse(batch.y, 0) as tf.Tensor2D }));
      reversedOptimizer.minimize(crossEntropy(reversed, flipped));
      tf.dispose([batch.x, batch.y, flipped.x, flipped.y]);
    }
    const noise = trajectoryDistance(weightsOf(reversed), reference, run.origin).relative;
    expect(noise).toBeLessThan(KFAC_RELATIVE);
    for (const replica of run.replicas) {
      const distance = trajectoryDistance(weightsOf(replica), reference, run.origin).relative;
      expect(distance).toBeLessThanOrEqual(Math.min(KFAC_RELATIVE, 4 * noise));
    }
    run.dispose();
    reversedOptimizer.dispose();
    reversed.dispose();
    const control = await trainBothWays((model) => new KfacOptimizer(model, KFAC_OPTIONS), 'float32', withGlobalRows);
    expect(trajectoryDistance(weightsOf(control.replicas[0]!), weightsOf(control.single), control.origin).relative).toBeGreaterThan(
      10 * KFAC_RELATIVE,
    );
    control.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a plain TransformOptimizer without capture (Adam): gradients only, same agreement', async () => {
    const before = tf.memory().numTensors;
    const run = await trainBothWays(() => new TransformOptimizer(adam({ learningRate: 1e-3 })), 'float32');
    const reference = weightsOf(run.single);
    for (const replica of run.replicas) {
      expect(trajectoryDistance(weightsOf(replica), reference, run.origin).relative).toBeLessThanOrEqual(FLOAT32_RELATIVE);
    }
    run.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('DataParallelTrainer.syncWeights', () => {
  it("gives every rank rank 0's weights, exactly, and leaks nothing", async () => {
    const before = tf.memory().numTensors;
    const group = createSimulatedGroup(3);
    const replicas = group.map((_, rank) => mlp(30 + rank));
    const expected = weightsOf(replicas[0]!);
    expect(weightsOf(replicas[1]!)[0]).not.toEqual(expected[0]);
    const trainers = replicas.map(
      (model, rank) =>
        new DataParallelTrainer({
          optimizer: new TransformOptimizer(adam({ learningRate: 1e-3 })),
          transport: group[rank]!,
          variables: trainableVariables(model),
        }),
    );
    await Promise.all(trainers.map((trainer) => trainer.syncWeights()));
    for (const model of replicas) expect(weightsOf(model)).toEqual(expected);
    for (const trainer of trainers) (trainer.optimizer as TransformOptimizer<unknown>).dispose();
    for (const model of replicas) model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects on every rank when the replicas differ in shape', async () => {
    const group = createSimulatedGroup(2);
    const replicas = [mlp(1, [16]), mlp(1, [17])];
    const trainers = replicas.map(
      (model, rank) =>
        new DataParallelTrainer({
          optimizer: new TransformOptimizer(adam({ learningRate: 1e-3 })),
          transport: group[rank]!,
          variables: trainableVariables(model),
        }),
    );
    const outcomes = await Promise.allSettled(trainers.map((trainer) => trainer.syncWeights()));
    outcomes.forEach((outcome, rank) => {
      expect(outcome.status).toBe('rejected');
      const error = (outcome as PromiseRejectedResult).reason as Error;
      expect(error.message).toMatch(
        new RegExp(`^DataParallelTrainer\\.syncWeights: rank ${rank} of 2 could not broadcast the initial weights: bucketedAllReduce: ranks sent different layouts`),
      );
      expect((error.cause as Error).name).toBe('BucketLayoutMismatchError');
    });
    for (const model of replicas) model.dispose();
  });
});

describe('DataParallelTrainer: failures', () => {
  it('a rank that throws mid-step: it rejects with its own error, the others with a clear error within the timeout', async () => {
    const before = tf.memory().numTensors;
    const timeoutMs = 1_000;
    const group = createSimulatedGroup(RANKS);
    const replicas = group.map(() => mlp(3, [8]));
    const optimizers = replicas.map((model) => new MkorOptimizer(model));
    const trainers = replicas.map(
      (model, rank) =>
        new DataParallelTrainer({ optimizer: optimizers[rank]!, transport: group[rank]!, variables: trainableVariables(model), timeoutMs }),
    );
    const batches = replicas.map((_, rank) => rowsOf(data.train, rank * 8, 8));
    await Promise.all(trainers.map((trainer, rank) => trainer.step(crossEntropy(replicas[rank]!, batches[rank]!))));
    const failing = 2;
    const started = performance.now();
    const outcomes = await Promise.allSettled(
      trainers.map((trainer, rank) =>
        trainer.step(() => {
          if (rank === failing) throw new Error('out of memory on rank 2');
          return crossEntropy(replicas[rank]!, batches[rank]!)();
        }),
      ),
    );
    const elapsed = performance.now() - started;
    outcomes.forEach((outcome, rank) => {
      expect(outcome.status).toBe('rejected');
      const message = ((outcome as PromiseRejectedResult).reason as Error).message;
      if (rank === failing) expect(message).toBe('out of memory on rank 2');
      else {
        expect(message).toMatch(new RegExp(`^DataParallelTrainer\\.step: rank ${rank} of 4 could not all-reduce step 1: `));
        // The first rank to time out names rank 2; the others learn that the group was aborted for it.
        expect(message).toMatch(/timed out after 1000 ms waiting for rank\(s\) 2$|the group was aborted: rank \d timed out in allReduce #\d+ waiting for rank\(s\) 2$/);
      }
    });
    expect(elapsed).toBeGreaterThanOrEqual(timeoutMs - 50);
    expect(elapsed).toBeLessThan(timeoutMs + 2_000);
    expect(trainers.map((trainer) => trainer.steps)).toEqual([1, 1, 1, 1]);
    tf.dispose(batches.flatMap((b) => [b.x, b.y]));
    for (const optimizer of optimizers) optimizer.dispose();
    for (const model of replicas) model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a rank that catches its step error and carries on is refused its next step; the others fail within the timeout', async () => {
    const before = tf.memory().numTensors;
    const timeoutMs = 1_000;
    const group = createSimulatedGroup(RANKS);
    const replicas = group.map(() => mlp(3, [8]));
    const optimizers = replicas.map((model) => new MkorOptimizer(model));
    const trainers = replicas.map(
      (model, rank) =>
        new DataParallelTrainer({ optimizer: optimizers[rank]!, transport: group[rank]!, variables: trainableVariables(model), timeoutMs }),
    );
    const batches = replicas.map((_, rank) => rowsOf(data.train, rank * 8, 8));
    const failing = 2;
    let failedAt = Number.NaN;
    // Every rank runs three steps; rank 2's second step throws, and it catches the error and goes on.
    const runs = trainers.map(async (trainer, rank) => {
      const errors: string[] = [];
      for (let step = 0; step < 3; step++) {
        try {
          await trainer.step(() => {
            if (rank === failing && step === 1) {
              failedAt = performance.now();
              throw new Error('bad batch on rank 2');
            }
            return crossEntropy(replicas[rank]!, batches[rank]!)();
          });
        } catch (error) {
          errors.push((error as Error).message);
          if (rank !== failing) break;
        }
      }
      return errors;
    });
    const errors = await Promise.all(runs);
    // From rank 2's failure to the others' errors (not counting the first step's compute, which a
    // loaded machine makes slow): the timeout plus the time to notice, with room for a busy CI.
    const elapsed = performance.now() - failedAt;
    expect(errors[failing]).toEqual([
      'bad batch on rank 2',
      expect.stringMatching(/^DataParallelTrainer\.step: rank 2 refuses step 1: an earlier step failed here \(bad batch on rank 2\)/),
    ]);
    for (const rank of [0, 1, 3]) {
      expect(errors[rank]).toHaveLength(1);
      expect(errors[rank]![0]).toMatch(new RegExp(`^DataParallelTrainer\\.step: rank ${rank} of 4 could not all-reduce step 1: `));
      expect(errors[rank]![0]).toMatch(/rank\(s\) 2$/);
    }
    expect(elapsed).toBeLessThan(timeoutMs + 4_000);
    // Before, rank 2's third call joined the others' second all-reduce, which all four completed
    // with rank 2 one batch behind (steps [2, 2, 2, 2]); only their third step timed out.
    expect(trainers.map((trainer) => trainer.steps)).toEqual([1, 1, 1, 1]);
    tf.dispose(batches.flatMap((b) => [b.x, b.y]));
    for (const optimizer of optimizers) optimizer.dispose();
    for (const model of replicas) model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('ranks whose models differ: every rank rejects with a mismatch instead of mixing data', async () => {
    const before = tf.memory().numTensors;
    const group = createSimulatedGroup(2);
    const replicas = [mlp(1, [8]), mlp(1, [8, 4])];
    const optimizers = replicas.map((model) => new MkorOptimizer(model));
    const trainers = replicas.map(
      (model, rank) => new DataParallelTrainer({ optimizer: optimizers[rank]!, transport: group[rank]!, variables: trainableVariables(model) }),
    );
    const batch = rowsOf(data.train, 0, 4);
    const outcomes = await Promise.allSettled(trainers.map((trainer, rank) => trainer.step(crossEntropy(replicas[rank]!, batch))));
    for (const outcome of outcomes) {
      expect(outcome.status).toBe('rejected');
      expect(((outcome as PromiseRejectedResult).reason as Error).message).toMatch(/^DataParallelTrainer\.step: rank \d of 2 could not all-reduce step 0: allReduce #0: ranks disagree: rank 0 sent 7213 elements, rank 1 sent 7217$/);
    }
    tf.dispose([batch.x, batch.y]);
    for (const optimizer of optimizers) optimizer.dispose();
    for (const model of replicas) model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects bad options and arguments with messages naming the class', async () => {
    const before = tf.memory().numTensors;
    const [transport] = createSimulatedGroup(1) as [SimulatedTransport];
    const optimizer = new TransformOptimizer(adam({ learningRate: 1e-3 }));
    const variable = zerosVariable([2], 'bad-options');
    const make = (options: object) => () => new DataParallelTrainer({ optimizer, transport, ...options } as never);
    expect(() => new DataParallelTrainer(undefined as never)).toThrow(/^DataParallelTrainer: expected options/);
    expect(make({ optimizer: {} })).toThrow(/^DataParallelTrainer: optimizer must have computeGradients and applyGradientsWithContext/);
    expect(make({ transport: { rank: 0 } })).toThrow(/^DataParallelTrainer: transport must be a Transport/);
    expect(make({ precision: 'bfloat16' })).toThrow(/^DataParallelTrainer: precision must be one of 'float32', 'float16'/);
    expect(make({ bucketBytes: 100 })).toThrow(/^DataParallelTrainer: bucketBytes must be an integer in \[256, ∞\), got 100/);
    expect(make({ bucketBytes: 1026 })).toThrow(/^DataParallelTrainer: bucketBytes must be a multiple of 4, got 1026/);
    expect(make({ timeoutMs: 0 })).toThrow(/^DataParallelTrainer: timeoutMs/);
    expect(make({ variables: [] })).toThrow(/^DataParallelTrainer: variables must be a non-empty array of tf.Variable/);
    const plain = tf.zeros([1]);
    expect(make({ variables: [plain] })).toThrow(/^DataParallelTrainer: variables\[0\] must be a tf.Variable/);
    const ints = tf.tidy(() => tf.variable(tf.zeros([1], 'int32'), true, 'bad-int'));
    expect(make({ variables: [ints] })).toThrow(/^DataParallelTrainer: variables\[0\] \('bad-int'\) must have dtype float32, got int32/);
    const trainer = make({ variables: [variable] })();
    await expect(trainer.step(undefined as never)).rejects.toThrow(/^DataParallelTrainer\.step: loss must be a function/);
    expect([trainer.rank, trainer.worldSize, trainer.precision, trainer.steps]).toEqual([0, 1, 'float32', 0]);
    tf.dispose([variable, ints, plain]);
    optimizer.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
