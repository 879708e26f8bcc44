import { activate64, affine64, expectCloseTo64 as expectClose, im2col64, matrix, maxAbs, preActivationGradient64, rowMean64, seededTensor } from '@mkor/testing';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { createCapture } from './create-capture';

function bits(values: tf.TypedArray): number[] {
  return Array.from(new Uint32Array(Float32Array.from(values).buffer));
}

/**
 * Float32 rounding: the affine part carries a relative error of about d_in·u (u = 2⁻²⁴ ≈ 6e-8,
 * d_in ≤ 18 here), tanh' and the row mean a few u more: 1e-5 × the largest averaged entry
 * leaves a margin of ~10.
 */
const TOLERANCE = 1e-5;

describe('createCapture().dense', () => {
  it.each([
    { title: '2-D with bias', shape: [6, 5], bias: true },
    { title: '2-D without bias', shape: [6, 5], bias: false },
    { title: '3-D (batch, seq, d) with bias', shape: [2, 4, 5], bias: true },
  ])('$title: output, statistics and gradients against float64 and the uncaptured layer', ({ shape, bias: withBias }) => {
    const inputDim = shape[shape.length - 1]!;
    const units = 3;
    const kernel = tf.variable(seededTensor([inputDim, units], 1));
    const bias = withBias ? tf.variable(seededTensor([units], 2)) : undefined;
    const x = seededTensor(shape, 3);
    const weights = seededTensor([...shape.slice(0, -1), units], 4);
    const variables = [kernel, ...(bias === undefined ? [] : [bias])];
    const before = tf.memory().numTensors;
    const capture = createCapture();

    let output: tf.Tensor | undefined;
    const captured = tf.variableGrads(() => {
      output = tf.keep(capture.dense('hidden', x, kernel, bias));
      return tf.sum(tf.mul(tf.tanh(output), weights));
    }, variables);
    // The same layer written without capture: the gradients must be bit-identical.
    const plain = tf.variableGrads(() => {
      const rows = tf.reshape(x, [-1, inputDim]);
      const product = tf.matMul(rows, kernel);
      const y = tf.reshape(bias === undefined ? product : tf.add(product, bias), weights.shape);
      return tf.sum(tf.mul(tf.tanh(y), weights));
    }, variables);
    for (const variable of variables) {
      expect(bits(captured.grads[variable.name]!.dataSync())).toEqual(bits(plain.grads[variable.name]!.dataSync()));
    }

    const rowCount = x.size / inputDim;
    const rows = matrix(rowCount, inputDim, x.dataSync());
    const z = affine64(rows, matrix(inputDim, units, kernel.dataSync()), bias?.dataSync());
    const dz = preActivationGradient64(z, matrix(rowCount, units, weights.dataSync()), 'tanh');
    expectClose(output!, z.data, TOLERANCE, maxAbs(z));
    const stats = capture.statistics('hidden')!;
    expect([stats.rows, stats.step]).toEqual([rowCount, 1]);
    expect([stats.a.shape, stats.g.shape]).toEqual([[inputDim], [units]]);
    expectClose(stats.a, rowMean64(rows), TOLERANCE, maxAbs(rows));
    expectClose(stats.g, rowMean64(dz), TOLERANCE, maxAbs(dz));
    expect(capture.secondOrder).toEqual([
      {
        name: 'hidden',
        kind: 'dense',
        gradientCount: 'rows',
        kernelName: kernel.name,
        ...(bias === undefined ? {} : { biasName: bias.name }),
        inputDim,
        outputDim: units,
        kernelShape: [inputDim, units],
      },
    ]);
    expect(capture.layerForVariable(kernel.name)?.name).toBe('hidden');

    tf.dispose([output!, captured.value, plain.value, ...Object.values(captured.grads), ...Object.values(plain.grads)]);
    capture.release();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, weights, ...variables]);
  });

  it('matches float64 on random shapes and scales (property)', () => {
    fc.assert(
      fc.property(
        fc.record({
          batch: fc.integer({ min: 1, max: 4 }),
          seq: fc.integer({ min: 0, max: 3 }),
          inputDim: fc.integer({ min: 1, max: 6 }),
          units: fc.integer({ min: 1, max: 5 }),
          seed: fc.integer({ min: 0, max: 2 ** 30 }),
          log10Scale: fc.double({ min: -3, max: 2, noNaN: true }),
        }),
        ({ batch, seq, inputDim, units, seed, log10Scale }) => {
          const shape = seq === 0 ? [batch, inputDim] : [batch, seq, inputDim];
          const scale = 10 ** log10Scale;
          const kernel = tf.variable(seededTensor([inputDim, units], seed));
          const x = tf.tidy(() => tf.mul(seededTensor(shape, seed + 1), scale));
          const weights = seededTensor([...shape.slice(0, -1), units], seed + 2);
          const before = tf.memory().numTensors;
          const capture = createCapture();
          const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(tf.sigmoid(capture.dense('layer', x, kernel)), weights)), [kernel]);
          tf.dispose([value, ...Object.values(grads)]);

          const rowCount = x.size / inputDim;
          const rows = matrix(rowCount, inputDim, x.dataSync());
          const z = affine64(rows, matrix(inputDim, units, kernel.dataSync()));
          const dz = preActivationGradient64(z, matrix(rowCount, units, weights.dataSync()), 'sigmoid');
          const stats = capture.statistics('layer')!;
          expect(stats.rows).toBe(rowCount);
          expectClose(stats.a, rowMean64(rows), TOLERANCE, maxAbs(rows));
          // sigmoid' = s(1 − s) in float32 has an absolute error of a few u wherever it saturates
          // (1 − s cancels), and z's own error (≈ d_in·u·|z|) moves it by at most 0.1·that: the
          // bound scales with max|R|·(1 + max|z|), not with the (possibly tiny) gradient itself.
          expectClose(stats.g, rowMean64(dz), TOLERANCE, maxAbs(matrix(rowCount, units, weights.dataSync())) * (1 + maxAbs(z)));
          capture.release();
          expect(tf.memory().numTensors).toBe(before);
          tf.dispose([kernel, x, weights]);
        },
      ),
      { numRuns: 25 },
    );
  });

  it('commits nothing without a gradient tape, and the last of several calls in one step wins', () => {
    const kernel = tf.variable(seededTensor([4, 2], 5));
    const first = seededTensor([3, 4], 6);
    const second = seededTensor([5, 4], 7);
    const capture = createCapture();
    const before = tf.memory().numTensors;
    tf.dispose(capture.dense('shared', first, kernel));
    expect(capture.statistics('shared')).toBeUndefined();
    expect(tf.memory().numTensors).toBe(before);

    const { value, grads } = tf.variableGrads(
      () => tf.add(tf.sum(capture.dense('shared', first, kernel)), tf.sum(capture.dense('shared', second, kernel))),
      [kernel],
    );
    tf.dispose([value, ...Object.values(grads)]);
    const stats = capture.statistics('shared')!;
    expect([stats.rows, stats.step]).toEqual([5, 1]);
    expectClose(stats.a, rowMean64(matrix(5, 4, second.dataSync())), TOLERANCE, 1);
    capture.release();
    tf.dispose([kernel, first, second]);
  });

  it('keeps tf.memory flat over many steps and disposes everything on release', () => {
    const kernel = tf.variable(seededTensor([4, 3], 8));
    const bias = tf.variable(tf.zeros([3]));
    const x = seededTensor([8, 4], 9);
    const before = tf.memory().numTensors;
    const capture = createCapture();
    const optimizer = tf.train.sgd(0.05);
    const step = () => optimizer.minimize(() => tf.mean(tf.square(tf.relu(capture.dense('layer', x, kernel, bias)))), true)?.dispose();
    step();
    const settled = tf.memory().numTensors;
    for (let i = 0; i < 30; i++) step();
    expect(tf.memory().numTensors).toBe(settled);
    expect(capture.statistics('layer')!.step).toBe(31);
    capture.release();
    expect(capture.statistics('layer')).toBeUndefined();
    optimizer.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([kernel, bias, x]);
  });
});

describe('createCapture().conv2d', () => {
  const convCases = [
    { title: "'same', bias", padding: 'same', strides: 1, bias: true },
    { title: "'valid', no bias", padding: 'valid', strides: 1, bias: false },
    { title: "'valid', stride 2, bias", padding: 'valid', strides: 2, bias: true },
    { title: "'same', stride 2, no bias", padding: 'same', strides: 2, bias: false },
  ] as const;

  // Differentiated with respect to the input: wasm has no Conv2DBackpropFilter kernel, and the
  // capture only needs the backward pass to run through the layer's output.
  it.each(convCases)('$title: statistics against a float64 im2col reference', ({ padding, strides, bias: withBias }) => {
    const shape: [number, number, number, number] = [2, 6, 7, 3];
    const [kh, kw, filters] = [3, 2, 4];
    const kernel = tf.variable(seededTensor([kh, kw, shape[3], filters], 11));
    const bias = withBias ? tf.variable(seededTensor([filters], 12)) : undefined;
    const x = seededTensor(shape, 13) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    const capture = createCapture();
    let output: tf.Tensor4D | undefined;
    let weights: tf.Tensor | undefined;
    const dx = tf.grad((input: tf.Tensor) => {
      output = tf.keep(capture.conv2d('conv', input as tf.Tensor4D, kernel, bias, { strides, padding }));
      weights = tf.keep(seededTensor(output.shape, 14));
      return tf.sum(tf.mul(tf.tanh(output), weights));
    })(x);

    const patches = im2col64(x.dataSync(), shape, { kernelSize: [kh, kw], strides: [strides, strides], dilationRate: [1, 1], padding });
    const z = affine64(patches, matrix(kh * kw * shape[3], filters, kernel.dataSync()), bias?.dataSync());
    expectClose(output!, z.data, TOLERANCE, maxAbs(z));
    const dz = preActivationGradient64(z, matrix(patches.rows, filters, weights!.dataSync()), 'tanh');
    const stats = capture.statistics('conv')!;
    expect([stats.rows, stats.step]).toEqual([patches.rows, 1]);
    expectClose(stats.a, rowMean64(patches), TOLERANCE, maxAbs(patches));
    expectClose(stats.g, rowMean64(dz), TOLERANCE, maxAbs(dz));
    expect(capture.secondOrder[0]).toMatchObject({ kind: 'conv2d', inputDim: kh * kw * shape[3], outputDim: filters, kernelShape: [kh, kw, shape[3], filters] });

    tf.dispose([dx, output!, weights!]);
    capture.release();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, kernel, ...(bias === undefined ? [] : [bias])]);
  });
});

describe('createCapture: registration and errors', () => {
  it('computes but does not capture layers wider than maxDim', () => {
    const kernel = tf.variable(seededTensor([3, 9], 15));
    const x = seededTensor([2, 3], 16);
    const capture = createCapture({ maxDim: 8 });
    const { value, grads } = tf.variableGrads(() => tf.sum(capture.dense('wide', x, kernel)), [kernel]);
    const y = capture.dense('wide', x, kernel);
    const rows = matrix(2, 3, x.dataSync());
    const z = affine64(rows, matrix(3, 9, kernel.dataSync()));
    expectClose(y, z.data, TOLERANCE, maxAbs(z));
    expect(capture.secondOrder).toEqual([]);
    expect(capture.firstOrder).toEqual([{ name: 'wide', variables: [kernel.name], reason: expect.stringMatching(/^wider than maxDim 8/) }]);
    expect(capture.statistics('wide')).toBeUndefined();
    expect(capture.describe()).toContain('wide');
    tf.dispose([value, y, ...Object.values(grads), kernel, x]);
    capture.release();
  });

  it('rejects mismatched re-registration, bad arguments and use after release', () => {
    const kernel = tf.variable(seededTensor([3, 2], 17));
    const other = tf.variable(seededTensor([3, 2], 18));
    const conv = tf.variable(seededTensor([2, 2, 3, 2], 19));
    const x = seededTensor([4, 3], 20);
    const capture = createCapture();
    tf.dispose(capture.dense('layer', x, kernel));
    expect(() => capture.dense('layer', x, other)).toThrow(/^capture\.dense: layer 'layer' was registered as dense/);
    expect(() => capture.dense('tied', x, kernel)).toThrow(/^capture\.dense: kernel '.*' already belongs to layer 'layer'/);
    expect(() => capture.dense('', x, kernel)).toThrow(/^capture\.dense: name must be a non-empty string/);
    expect(() => capture.dense('a', seededTensor([4, 5], 1), kernel)).toThrow(/^capture\.dense: x must be a live tensor of rank ≥ 2 whose last axis is 3/);
    expect(() => capture.dense('a', x, tf.zeros([3, 2]) as unknown as tf.Variable)).toThrow(/^capture\.dense: kernel must be a tf\.Variable/);
    expect(() => capture.dense('a', x, kernel, tf.variable(tf.zeros([3])))).toThrow(/^capture\.dense: bias must have shape \[2\]/);
    expect(() => capture.conv2d('c', x as unknown as tf.Tensor4D, conv)).toThrow(/^capture\.conv2d: x must have rank 4/);
    const image = tf.zeros([1, 4, 4, 3]) as tf.Tensor4D;
    expect(() => capture.conv2d('c', image, conv, undefined, { padding: 'full' as 'same' })).toThrow(/^capture\.conv2d: padding must be one of 'valid', 'same'/);
    expect(() => capture.conv2d('c', image, conv, undefined, { strides: 0 })).toThrow(/^capture\.conv2d: strides\[0\] must be an integer/);
    expect(() => createCapture({ maxDim: 1.5 })).toThrow(/^createCapture: maxDim must be an integer/);
    capture.release();
    expect(() => capture.dense('layer', x, kernel)).toThrow(/^capture\.dense: this capture has been released/);
    tf.dispose([kernel, other, conv, x, image]);
  });
});

describe('the float64 references used here', () => {
  it('activate64 and preActivationGradient64 agree with a finite difference', () => {
    const z = matrix(2, 3, [0.3, -1.2, 0.8, 2.0, 0.1, -0.4]);
    const upstream = matrix(2, 3, [0.5, -0.7, 1.1, 0.2, 0.9, -0.3]);
    for (const activation of ['linear', 'relu', 'elu', 'tanh', 'sigmoid', 'softmax'] as const) {
      const exact = preActivationGradient64(z, upstream, activation);
      const loss = (m: typeof z): number => activate64(m, activation).data.reduce((s, v, k) => s + v * (upstream.data[k] as number), 0);
      for (let k = 0; k < z.data.length; k++) {
        const h = 1e-6;
        const plus = matrix(2, 3, z.data.map((v, i) => (i === k ? v + h : v)));
        const minus = matrix(2, 3, z.data.map((v, i) => (i === k ? v - h : v)));
        expect(Math.abs((loss(plus) - loss(minus)) / (2 * h) - (exact.data[k] as number))).toBeLessThan(1e-8);
      }
    }
  });
});
