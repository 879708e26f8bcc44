import { affine64, expectCloseTo64 as expectClose, im2col64, matrix, maxAbs, preActivationGradient64, secondMoment64, seededTensor } from '@mkor/testing';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';

import { createCapture } from './create-capture';
import { prepareModel } from './prepare-model';

/**
 * `(1/n) Σ xᵢxᵢᵀ` in float32 sums n products of entries whose own rounding (the affine part and
 * tanh') is a few d_in·u relative (u = 2⁻²⁴ ≈ 6e-8, d_in ≤ 18 here); summation adds ≤ n·u with
 * n ≤ 60 rows. 2e-5 × the largest squared entry leaves a margin of ~5.
 */
const TOLERANCE = 2e-5;

describe('covariance capture', () => {
  it.each([
    { title: '2-D with bias', shape: [6, 5] },
    { title: '3-D (batch, seq, d)', shape: [2, 4, 5] },
  ])('createCapture().dense ($title): A = (1/n)XᵀX and G = (1/n)Σ dy dyᵀ against float64', ({ shape }) => {
    const inputDim = shape[shape.length - 1]!;
    const units = 3;
    const kernel = tf.variable(seededTensor([inputDim, units], 1));
    const bias = tf.variable(seededTensor([units], 2));
    const x = seededTensor(shape, 3);
    const weights = seededTensor([...shape.slice(0, -1), units], 4);
    const before = tf.memory().numTensors;
    const capture = createCapture({ covariance: true });
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(tf.tanh(capture.dense('hidden', x, kernel, bias)), weights)), [kernel, bias]);
    tf.dispose([value, ...Object.values(grads)]);

    const rowCount = x.size / inputDim;
    const rows = matrix(rowCount, inputDim, x.dataSync());
    const z = affine64(rows, matrix(inputDim, units, kernel.dataSync()), bias.dataSync());
    const dz = preActivationGradient64(z, matrix(rowCount, units, weights.dataSync()), 'tanh');
    const stats = capture.statistics('hidden')!;
    expect(stats.covariance?.a.shape).toEqual([inputDim, inputDim]);
    expect(stats.covariance?.g.shape).toEqual([units, units]);
    expectClose(stats.covariance!.a, secondMoment64(rows).data, TOLERANCE, maxAbs(rows) ** 2);
    expectClose(stats.covariance!.g, secondMoment64(dz).data, TOLERANCE, maxAbs(dz) ** 2);
    capture.release();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([kernel, bias, x, weights]);
  });

  it.each([
    { title: "'same', stride 1", padding: 'same', strides: 1 },
    { title: "'valid', stride 2", padding: 'valid', strides: 2 },
  ] as const)('createCapture().conv2d ($title): the unfolded-patch covariance against a float64 im2col', ({ padding, strides }) => {
    const shape: [number, number, number, number] = [2, 6, 7, 3];
    const [kh, kw, filters] = [3, 2, 4];
    const kernel = tf.variable(seededTensor([kh, kw, shape[3], filters], 11));
    const bias = tf.variable(seededTensor([filters], 12));
    const x = seededTensor(shape, 13) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    const capture = createCapture({ covariance: true });
    let output: tf.Tensor4D | undefined;
    let weights: tf.Tensor | undefined;
    // Differentiated with respect to the input: wasm has no Conv2DBackpropFilter kernel.
    const dx = tf.grad((input: tf.Tensor) => {
      output = tf.keep(capture.conv2d('conv', input as tf.Tensor4D, kernel, bias, { strides, padding }));
      weights = tf.keep(seededTensor(output.shape, 14));
      return tf.sum(tf.mul(tf.tanh(output), weights));
    })(x);
    const patches = im2col64(x.dataSync(), shape, { kernelSize: [kh, kw], strides: [strides, strides], dilationRate: [1, 1], padding });
    const z = affine64(patches, matrix(kh * kw * shape[3], filters, kernel.dataSync()), bias.dataSync());
    const dz = preActivationGradient64(z, matrix(patches.rows, filters, weights!.dataSync()), 'tanh');
    const stats = capture.statistics('conv')!;
    expectClose(stats.covariance!.a, secondMoment64(patches).data, TOLERANCE, maxAbs(patches) ** 2);
    expectClose(stats.covariance!.g, secondMoment64(dz).data, TOLERANCE, maxAbs(dz) ** 2);
    tf.dispose([dx, output!, weights!]);
    capture.release();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([kernel, bias, x]);
  });

  it('prepareModel({ covariance: true }) records covariances, flat in memory over steps; off by default', () => {
    const model = tfl.sequential({
      layers: [
        tfl.layers.dense({ units: 4, activation: 'relu', inputShape: [5], kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }) }),
        tfl.layers.dense({ units: 3, kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) }),
      ],
    });
    const x = seededTensor([7, 5], 21);
    const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const before = tf.memory().numTensors;
    const registry = prepareModel(model, { covariance: true });
    const step = (): void => {
      const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(model.apply(x) as tf.Tensor)), variables);
      tf.dispose([value, ...Object.values(grads)]);
    };
    step();
    const settled = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) step();
    expect(tf.memory().numTensors).toBe(settled);
    const first = registry.statistics(model.layers[0]!.name)!;
    expect(first.step).toBe(6);
    expect(first.covariance?.a.shape).toEqual([5, 5]);
    expect(first.covariance?.g.shape).toEqual([4, 4]);
    const rows = matrix(7, 5, x.dataSync());
    expectClose(first.covariance!.a, secondMoment64(rows).data, TOLERANCE, maxAbs(rows) ** 2);
    registry.release();
    expect(tf.memory().numTensors).toBe(before);

    const plain = prepareModel(model);
    step();
    expect(plain.statistics(model.layers[0]!.name)?.covariance).toBeUndefined();
    plain.release();
    expect(() => prepareModel(model, { covariance: 'yes' as unknown as boolean })).toThrow(/prepareModel: covariance must be a boolean/);
    expect(() => createCapture({ covariance: 1 as unknown as boolean })).toThrow(/createCapture: covariance must be a boolean/);
    x.dispose();
    model.dispose();
  });
});
