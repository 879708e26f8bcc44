import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it, vi } from 'vitest';

import { CHECKPOINT_FORMAT, TransformOptimizer } from './optimizer';
import { type Transform, chain, scaleBy } from './transform';

/** Heavy-ball momentum with tensor state, `m ← 0.5m + g`, and a record of the losses it saw. */
function momentum(): Transform<{ m: Record<string, tf.Tensor>; losses: number[] }> {
  return {
    init: (params) => ({ m: Object.fromEntries(Object.entries(params).map(([k, p]) => [k, tf.zerosLike(p)])), losses: [] }),
    update: (updates, state, context) => {
      const m: Record<string, tf.Tensor> = {};
      for (const [k, g] of Object.entries(updates)) m[k] = tf.add(tf.mul(state.m[k]!, 0.5), g);
      return { updates: m, state: { m, losses: context?.loss === undefined ? state.losses : [...state.losses, context.loss] } };
    },
  };
}

/** Float64 reference: the same method on f(w) = Σ (w − t)², gradient 2(w − t). */
function reference(w0: number[], target: number[], steps: number, lr: number): number[] {
  const w = [...w0];
  const m = w.map(() => 0);
  for (let s = 0; s < steps; s++) {
    w.forEach((wi, i) => {
      m[i] = 0.5 * (m[i] as number) + 2 * (wi - (target[i] as number));
      w[i] = wi - lr * (m[i] as number);
    });
  }
  return w;
}

describe('TransformOptimizer', () => {
  const target = [1, -2, 3];
  const loss = (w: tf.Variable) => () => tf.sum(tf.square(tf.sub(w, tf.tensor1d(target)))) as tf.Scalar;

  it('minimizes with any transform, matches a float64 reference and leaks nothing', () => {
    const w = tf.variable(tf.tensor1d([0, 0, 0]), true, 'transform-optimizer-w1');
    const optimizer = new TransformOptimizer(chain(momentum(), scaleBy(-0.1)), { readsLoss: true });
    optimizer.minimize(loss(w));
    const before = tf.memory().numTensors;
    for (let s = 1; s < 20; s++) optimizer.minimize(loss(w));
    expect(tf.memory().numTensors).toBe(before);
    const expected = reference([0, 0, 0], target, 20, 0.1);
    Array.from(w.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(expected[i] as number, 5));
    expect(optimizer.iterations).toBe(20);
    expect(optimizer.currentState?.[0].losses).toHaveLength(20);
    expect(optimizer.currentState?.[0].losses[0]).toBeCloseTo(14, 5);
    optimizer.dispose();
    w.dispose();
  });

  it('minimizeAsync reads the loss with no synchronous read-back, steps as minimize does, returns the cost or frees it', async () => {
    const sync = tf.variable(tf.tensor1d([0, 0, 0]), true, 'transform-optimizer-w-sync');
    const async = tf.variable(tf.tensor1d([0, 0, 0]), true, 'transform-optimizer-w-async');
    const bySync = new TransformOptimizer(chain(momentum(), scaleBy(-0.1)), { readsLoss: true });
    const byAsync = new TransformOptimizer(chain(momentum(), scaleBy(-0.1)), { readsLoss: true });
    bySync.minimize(loss(sync));
    await byAsync.minimizeAsync(loss(async));
    const before = tf.memory().numTensors;
    const readSync = vi.spyOn(tf.Tensor.prototype, 'dataSync');
    for (let s = 1; s < 10; s++) {
      bySync.minimize(loss(sync));
      const cost = await byAsync.minimizeAsync(loss(async), s === 9);
      if (s === 9) {
        expect(cost?.dataSync()[0]).toBeCloseTo(byAsync.currentState![0].losses[9]!, 6);
        cost?.dispose();
      } else expect(cost).toBeNull();
      if (s === 8) expect(readSync).toHaveBeenCalledTimes(8); // minimize's reads only
    }
    readSync.mockRestore();
    expect(tf.memory().numTensors).toBe(before);
    expect(Array.from(async.dataSync())).toEqual(Array.from(sync.dataSync()));
    expect(byAsync.currentState![0].losses).toEqual(bySync.currentState![0].losses);
    expect(byAsync.iterations).toBe(10);
    // A loss function that throws leaves nothing behind.
    await expect(byAsync.minimizeAsync(() => { throw new Error('bad batch'); })).rejects.toThrow('bad batch');
    expect(tf.memory().numTensors).toBe(before);
    // A step taken while one awaits its loss is refused; the pending one completes as if alone.
    const pending = byAsync.minimizeAsync(loss(async));
    expect(() => byAsync.minimize(loss(async))).toThrow('TransformOptimizer.minimize: a minimizeAsync step is in flight; await it before taking the next step');
    await expect(byAsync.minimizeAsync(loss(async))).rejects.toThrow('TransformOptimizer.minimizeAsync: a minimizeAsync step is in flight');
    await pending;
    bySync.minimize(loss(sync));
    expect(Array.from(async.dataSync())).toEqual(Array.from(sync.dataSync()));
    expect(byAsync.iterations).toBe(11);
    expect(tf.memory().numTensors).toBe(before);
    [bySync, byAsync].forEach((o) => o.dispose());
    tf.dispose([sync, async]);
  });

  it('resumes from getWeights/setWeights exactly as an uninterrupted run', async () => {
    const make = () => new TransformOptimizer(chain(momentum(), scaleBy(-0.05)), { statePrefix: 'test' });
    const straight = tf.variable(tf.tensor1d([0.5, 0.5, 0.5]), true, 'transform-optimizer-w2');
    const uninterrupted = make();
    for (let s = 0; s < 10; s++) uninterrupted.minimize(loss(straight));

    const resumed = tf.variable(tf.tensor1d([0.5, 0.5, 0.5]), true, 'transform-optimizer-w3');
    const first = make();
    for (let s = 0; s < 4; s++) first.minimize(loss(resumed));
    const checkpoint = await first.getWeights();
    expect(checkpoint[0]!.name).toBe('iter');
    const second = make();
    // setWeights copies what it keeps, so the checkpoint's owner may go away.
    await second.setWeights(checkpoint);
    first.dispose();
    for (let s = 4; s < 10; s++) second.minimize(loss(resumed));
    expect(second.iterations).toBe(10);
    expect(Array.from(resumed.dataSync())).toEqual(Array.from(straight.dataSync()));
    tf.dispose(checkpoint[0]!.tensor);
    [uninterrupted, second].forEach((o) => o.dispose());
    tf.dispose([straight, resumed]);
  });

  it('refuses a checkpoint that does not match, keeping it pending', async () => {
    const w = tf.variable(tf.tensor1d([0, 0, 0]), true, 'transform-optimizer-w4');
    const optimizer = new TransformOptimizer(momentum());
    const header = [
      { name: 'iter', tensor: tf.scalar(3) },
      { name: 'state/checkpoint/format', tensor: tf.scalar(CHECKPOINT_FORMAT, 'int32') },
      { name: 'state/checkpoint/config', tensor: tf.scalar('{}', 'string') },
    ];
    await optimizer.setWeights([...header, { name: 'state/m/other', tensor: tf.zeros([3]) }]);
    expect(() => optimizer.minimize(loss(w))).toThrow(/no entry 'state\/m\/transform-optimizer-w4'/);
    expect(() => optimizer.minimize(loss(w))).toThrow(/no entry/);
    expect(Array.from(w.dataSync())).toEqual([0, 0, 0]);
    optimizer.dispose();
    tf.dispose(header.map((e) => e.tensor));
    w.dispose();
  });

  it('checks a checkpoint before touching anything: empty, foreign, old, other configuration, int32, NaN', async () => {
    /** A momentum optimizer whose configuration is its decay, as the method optimizers report theirs. */
    class Configured extends TransformOptimizer<ReturnType<ReturnType<typeof momentum>['init']>> {
      constructor(readonly decay: number) {
        super(momentum(), { statePrefix: 'configured' });
      }
      override getConfig(): tf.serialization.ConfigDict {
        return { decay: this.decay };
      }
    }
    const w = tf.variable(tf.tensor1d([0.5, 0.5, 0.5]), true, 'transform-optimizer-w7');
    const source = new Configured(0.5);
    for (let s = 0; s < 2; s++) source.minimize(loss(w));
    const saved = (await source.getWeights()).map((e) => ({ name: e.name, tensor: tf.clone(e.tensor) }));
    source.dispose();
    expect(saved.map((e) => e.name).slice(0, 3)).toEqual(['iter', 'configured/checkpoint/format', 'configured/checkpoint/config']);

    const target = new Configured(0.5);
    target.minimize(loss(w));
    const stateBefore = target.currentState;
    const weightsBefore = Array.from(w.dataSync());
    const replace = (name: string, tensor: tf.Tensor) => saved.map((e) => (e.name === name ? { name, tensor } : e));
    const bad = {
      int32: tf.zeros([3], 'int32'),
      nan: tf.tensor1d([0, Number.NaN, 0]),
      oldFormat: tf.scalar(1, 'int32'),
      formatTwo: tf.scalar(2, 'int32'),
    };
    const momentName = 'configured/m/transform-optimizer-w7';
    const memoryBefore = tf.memory().numTensors;
    const cases: [unknown, RegExp][] = [
      [[], /TransformOptimizer\.setWeights: the checkpoint is empty/],
      [saved.filter((e) => !e.name.includes('/checkpoint/')), /no 'configured\/checkpoint\/format' entry/],
      [replace('configured/checkpoint/format', bad.oldFormat), /of format 1; this version reads format 3$/],
      [replace('configured/checkpoint/format', bad.formatTwo), /of format 2; this version reads format 3 \(format 2 named the second-order state by method .*\); continue from the saved model's weights with a fresh optimizer/],
      [replace(momentName, bad.int32), new RegExp(`'${momentName}' is int32, expected float32`)],
      [replace(momentName, bad.nan), new RegExp(`'${momentName}' holds NaN or Inf`)],
    ];
    for (const [checkpoint, message] of cases) {
      await expect(target.setWeights(checkpoint as never)).rejects.toThrow(message);
      expect(target.currentState).toBe(stateBefore);
    }
    const other = new Configured(0.9);
    await expect(other.setWeights(saved)).rejects.toThrow(/configured differently \(decay: 0\.5 in the checkpoint, 0\.9 here\)/);
    other.dispose();
    // A structural mismatch is found at once after a step, and the state it had is kept.
    await expect(target.setWeights(saved.filter((e) => e.name !== momentName))).rejects.toThrow(/no entry/);
    expect(target.currentState).toBe(stateBefore);
    expect(tf.memory().numTensors).toBe(memoryBefore);
    target.minimize(loss(w));
    expect(Array.from(w.dataSync())).not.toEqual(weightsBefore);
    target.dispose();
    tf.dispose([...saved.map((e) => e.tensor), ...Object.values(bad)]);
    w.dispose();
  });

  it('frees what the forward pass saved for the backward pass when the loss function throws', () => {
    const w = tf.variable(tf.tensor2d([[1, 2], [3, 4]]), true, 'transform-optimizer-w8');
    const optimizer = new TransformOptimizer(chain(momentum(), scaleBy(-0.1)));
    const x = tf.ones([3, 2]);
    const throwing = (): tf.Scalar => {
      tf.sum(tf.relu(tf.matMul(x, w)));
      throw new Error('the loss failed after the forward pass');
    };
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) expect(() => optimizer.minimize(throwing)).toThrow(/the loss failed/);
    // tfjs alone keeps the tensors its kernels saved for backprop (here 3 per call).
    expect(tf.memory().numTensors).toBe(before);
    optimizer.minimize(() => tf.sum(tf.matMul(x, w)) as tf.Scalar);
    optimizer.dispose();
    tf.dispose([x, w]);
  });

  it('keeps what getWeights returns its own: repeated saves leak nothing, a disposed entry is named', async () => {
    const w = tf.variable(tf.tensor1d([0.5, 0.5, 0.5]), true, 'transform-optimizer-w9');
    const optimizer = new TransformOptimizer(chain(momentum(), scaleBy(-0.1)));
    optimizer.minimize(loss(w));
    await optimizer.getWeights();
    const settled = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) await optimizer.getWeights();
    expect(tf.memory().numTensors).toBe(settled);
    const weights = await optimizer.getWeights();
    const fresh = new TransformOptimizer(chain(momentum(), scaleBy(-0.1)));
    optimizer.dispose();
    await expect(fresh.setWeights(weights)).rejects.toThrow(/setWeights: checkpoint entry 'iter' was disposed: .* clone them to keep them/);
    fresh.dispose();
    w.dispose();
  });

  it('refuses what is not a transform', () => {
    expect(() => new TransformOptimizer({} as never)).toThrow(/expected a Transform/);
  });
});

describe('TransformOptimizer inside an enclosing tidy', () => {
  it('keeps its state alive across steps run in tf.tidy, as model.fit does', () => {
    const w = tf.variable(tf.tensor1d([0, 0, 0]), true, 'transform-optimizer-w5');
    const optimizer = new TransformOptimizer(chain(momentum(), scaleBy(-0.1)));
    for (let s = 0; s < 5; s++) {
      tf.tidy(() => {
        optimizer.minimize(() => tf.sum(tf.square(tf.sub(w, tf.tensor1d([1, -2, 3])))) as tf.Scalar);
      });
    }
    const expected = reference([0, 0, 0], [1, -2, 3], 5, 0.1);
    Array.from(w.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(expected[i] as number, 5));
    optimizer.dispose();
    w.dispose();
  });
});

describe('instanceof', () => {
  it('is true for subclass instances only, while tfjs still sees an Optimizer', () => {
    const optimizer = new TransformOptimizer(scaleBy(-1));
    const adam = tf.train.adam(0.1);
    expect(optimizer instanceof TransformOptimizer).toBe(true);
    expect(optimizer instanceof tf.Optimizer).toBe(true);
    expect(adam instanceof TransformOptimizer).toBe(false);
    optimizer.dispose();
    adam.dispose();
  });
});

describe('applyGradientsWithContext', () => {
  it('passes the caller\u2019s loss and extras to the transform', () => {
    const seen: unknown[] = [];
    const spy: Transform<null> = {
      init: () => null,
      update: (updates, state, context) => {
        seen.push([context?.loss, context?.extras?.tag]);
        return { updates: Object.fromEntries(Object.entries(updates).map(([k, u]) => [k, tf.zerosLike(u)])), state };
      },
    };
    const w = tf.variable(tf.tensor1d([1]), true, 'transform-optimizer-w6');
    const optimizer = new TransformOptimizer(spy);
    const grad = tf.tensor1d([1]);
    optimizer.applyGradientsWithContext({ [w.name]: grad }, { loss: 0.5, extras: { tag: 'reduced' } });
    expect(seen).toEqual([[0.5, 'reduced']]);
    optimizer.dispose();
    tf.dispose([w, grad]);
  });
});
