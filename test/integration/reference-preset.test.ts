/**
 * The `preset: 'reference'` MkorOptimizer against a float64 mirror of the authors' code
 * (authors-mkor64.ts): the same MLP, data and initial weights, trained step by step; the weights
 * must agree to float32 rounding after every step.
 */
import { sgd } from '@mkor/first-order';
import { MkorOptimizer } from '@mkor/mkor';
import { type Matrix64, matrix, seededStream, transpose } from '@mkor/testing';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';

import { type Layer64, authorsMkorStep64, initAuthorsMkor64 } from './authors-mkor64';

/** Deterministic values in [-0.5, 0.5), so the test data are fixed. */
function stream(seed: number): () => number {
  const next = seededStream(seed);
  return () => next() / 2;
}

function randomMatrix(rows: number, cols: number, next: () => number, scale: number): Matrix64 {
  return matrix(rows, cols, Array.from({ length: rows * cols }, () => next() * scale));
}

describe('preset: reference', () => {
  // Small data leaves the authors' ±100 row clamp idle; large data (inputs up to ±150, n·∂Loss/∂y
  // rows in the hundreds) makes it bite on both sides.
  it.each([
    { label: 'small data', dataScale: 2, learningRate: 0.05 },
    { label: 'data the ±100 row clamp cuts', dataScale: 300, learningRate: 1e-4 },
  ])('follows a float64 mirror of the authors\u2019 code step by step ($label)', ({ dataScale, learningRate }) => {
    const [batch, dIn, hidden, dOut] = [16, 6, 5, 3];
    const next = stream(7);
    const x = randomMatrix(batch, dIn, next, dataScale);
    const y = randomMatrix(batch, dOut, next, dataScale);
    // Authors' layout: weight [out, in]. Round the start to float32 so both begin identically.
    const round = (m: Matrix64) => matrix(m.rows, m.cols, Float32Array.from(m.data));
    const layers64: [Layer64, Layer64] = [
      { weight: round(randomMatrix(hidden, dIn, next, 1)), bias: Float64Array.from(Float32Array.from({ length: hidden }, () => next() * 0.2)) },
      { weight: round(randomMatrix(dOut, hidden, next, 1)), bias: Float64Array.from(Float32Array.from({ length: dOut }, () => next() * 0.2)) },
    ];

    const model = tfl.sequential({
      layers: [
        tfl.layers.dense({ units: hidden, activation: 'relu', inputShape: [dIn] }),
        tfl.layers.dense({ units: dOut }),
      ],
    });
    model.setWeights([
      tf.tensor2d(Float32Array.from(transpose(layers64[0].weight).data), [dIn, hidden]),
      tf.tensor1d(Float32Array.from(layers64[0].bias)),
      tf.tensor2d(Float32Array.from(transpose(layers64[1].weight).data), [hidden, dOut]),
      tf.tensor1d(Float32Array.from(layers64[1].bias)),
    ]);
    const options = { learningRate, momentum: 0.9, invFreq: 4, warmupSteps: 3 };
    const optimizer = new MkorOptimizer(model, {
      preset: 'reference',
      factorUpdateInterval: options.invFreq,
      warmupSteps: options.warmupSteps,
      backend: sgd({ learningRate: options.learningRate, momentum: options.momentum }),
    });
    expect(optimizer.capture.secondOrder.map((l) => l.kind)).toEqual(['dense', 'dense']);

    const xs = tf.tensor2d(Float32Array.from(x.data), [batch, dIn]);
    const ys = tf.tensor2d(Float32Array.from(y.data), [batch, dOut]);
    const state64 = initAuthorsMkor64();
    const before = tf.memory().numTensors;
    for (let step = 0; step < 14; step++) {
      const loss64 = authorsMkorStep64(layers64, state64, x, y, options);
      const loss = optimizer.minimize(
        () => tf.losses.meanSquaredError(ys, model.apply(xs, { training: true }) as tf.Tensor) as tf.Scalar,
        true,
      ) as tf.Scalar;
      // float32 loss against float64: relative rounding of a mean of b·c squares.
      expect(Math.abs((loss.dataSync()[0] as number) - loss64)).toBeLessThanOrEqual(1e-5 * loss64 + 1e-6);
      loss.dispose();
      const weights = model.getWeights().map((w) => w.dataSync());
      const expected = [
        transpose(layers64[0].weight).data, layers64[0].bias,
        transpose(layers64[1].weight).data, layers64[1].bias,
      ];
      weights.forEach((w, i) => {
        const e = expected[i] as Float64Array;
        let worst = 0;
        let scale = 0;
        for (let k = 0; k < e.length; k++) {
          worst = Math.max(worst, Math.abs((w[k] as number) - (e[k] as number)));
          scale = Math.max(scale, Math.abs(e[k] as number));
        }
        // float32 through ~14 steps of matmuls on 16×6 data: a few ulps of growth per step.
        expect(worst / scale).toBeLessThan(2e-5);
      });
    }
    // Steady state: the only new tensors are the optimizer state created at the first step.
    const afterFirst = tf.memory().numTensors;
    optimizer.minimize(() => tf.losses.meanSquaredError(ys, model.apply(xs, { training: true }) as tf.Tensor) as tf.Scalar);
    expect(tf.memory().numTensors).toBe(afterFirst);
    expect(afterFirst).toBeGreaterThan(before);
    optimizer.dispose();
    tf.dispose([xs, ys]);
    model.dispose();
  });
});
