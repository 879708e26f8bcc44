import { activate64, affine64, matmul, matrix, maxAbs, preActivationGradient64, rowMean64, seeded } from '@mkor/testing';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';

import { createCapture } from './create-capture';
import { CONV2D_LAYER_KIND, DEFAULT_LAYER_KINDS, DENSE_LAYER_KIND } from './default-layer-kinds';
import type { LayerKindHandler } from './layer-kind';
import { prepareModel } from './prepare-model';

/**
 * A layer class no default kind covers: `tanh(x K)` with a kernel `K` and no bias, written as a
 * user would write a custom tfjs-layers layer.
 */
class LinearTanh extends tfl.layers.Layer {
  static readonly className = 'LinearTanh';
  kernel: tfl.LayerVariable | null = null;

  constructor(private readonly units: number) {
    super({});
  }

  override build(inputShape: tfl.Shape | tfl.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tfl.Shape;
    this.kernel = this.addWeight('kernel', [shape[shape.length - 1]!, this.units], 'float32', tfl.initializers.glorotNormal({ seed: 1 }));
    this.built = true;
  }

  override computeOutputShape(inputShape: tfl.Shape | tfl.Shape[]): tfl.Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tfl.Shape;
    return [...shape.slice(0, -1), this.units];
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => tf.tanh(tf.matMul(Array.isArray(inputs) ? inputs[0]! : inputs, this.kernel!.read())));
  }
}

/** The one entry that captures {@link LinearTanh}: its kernel, its linear part and activation, dense statistics. */
const LINEAR_TANH_KIND: LayerKindHandler = {
  kind: 'linear-tanh',
  classNames: ['LinearTanh'],
  gradientCount: 'rows',
  describe: (layer) => {
    const { kernel } = layer as LinearTanh;
    return kernel === null ? undefined : { kernel, bias: null, inputDim: kernel.shape[0]!, outputDim: kernel.shape[1]! };
  },
  linearPart: (layer, input) => tf.matMul(input, (layer as LinearTanh).kernel!.read()),
  activation: (_layer, preActivation) => tf.tanh(preActivation),
  statistics: DENSE_LAYER_KIND.statistics,
};

function seededTensor(shape: number[], seed: number): tf.Tensor {
  return tf.tensor(seeded(shape.reduce((p, s) => p * s, 1), seed), shape);
}

/** `relu` Dense 4 → 5, then a {@link LinearTanh} 5 → 3, weights from the seeded generator. */
function buildModel(): tfl.Sequential {
  const model = tfl.sequential({ layers: [tfl.layers.dense({ units: 5, activation: 'relu', inputShape: [4], name: 'hidden' }), new LinearTanh(3)] });
  model.setWeights(model.getWeights().map((w, i) => tf.tidy(() => tf.mul(seededTensor(w.shape, 20 + i), 0.6))));
  return model;
}

/** Float32 bit patterns: equal arrays mean bit-identical tensors. */
function bits(t: tf.Tensor): number[] {
  return Array.from(new Uint32Array(Float32Array.from(t.dataSync()).buffer));
}

/** Output and variable gradients of `Σ R ⊙ model(x)`, as bits. */
function observe(model: tfl.LayersModel, x: tf.Tensor, weights: tf.Tensor): number[][] {
  let output: tf.Tensor | undefined;
  const { value, grads } = tf.variableGrads(() => {
    output = tf.keep(model.apply(x) as tf.Tensor);
    return tf.sum(tf.mul(output, weights));
  });
  const observed = [bits(output!), ...Object.values(grads).map(bits)];
  tf.dispose([value, output!, ...Object.values(grads)]);
  return observed;
}

function expectClose(actual: tf.Tensor, expected: Float64Array, scale: number): void {
  const got = actual.dataSync();
  expect(got.length).toBe(expected.length);
  expected.forEach((value, i) => expect(Math.abs((got[i] as number) - value)).toBeLessThanOrEqual(1e-5 * Math.max(1, scale)));
}

describe('the table of layer kinds', () => {
  it('gives each captured layer its kind and gradient count: dense counts rows, conv2d samples', () => {
    const model = tfl.sequential({
      layers: [
        tfl.layers.conv2d({ filters: 2, kernelSize: 2, inputShape: [4, 4, 1], name: 'conv' }),
        tfl.layers.flatten(),
        tfl.layers.dense({ units: 3, name: 'out' }),
      ],
    });
    const registry = prepareModel(model);
    expect(registry.secondOrder.map(({ name, kind, gradientCount }) => [name, kind, gradientCount])).toEqual([
      ['conv', 'conv2d', 'samples'],
      ['out', 'dense', 'rows'],
    ]);
    registry.release();
    model.dispose();

    const capture = createCapture();
    const x = tf.ones([1, 3, 3, 1]) as tf.Tensor4D;
    const kernel = tf.variable(tf.ones([2, 2, 1, 2]));
    tf.dispose(capture.conv2d('hand', x, kernel));
    expect(capture.secondOrder[0]).toMatchObject({ kind: CONV2D_LAYER_KIND.kind, gradientCount: 'samples' });
    capture.release();
    tf.dispose([x, kernel]);
  });

  it('captures a new layer class through one entry: statistics against float64, outputs and gradients unchanged, no leak', () => {
    const model = buildModel();
    const x = seededTensor([6, 4], 3);
    const weights = seededTensor([6, 3], 5);
    const before = tf.memory().numTensors;
    const plain = observe(model, x, weights);
    const defaults = prepareModel(model);
    expect(defaults.firstOrder.map((l) => l.reason)).toEqual(["unsupported layer class 'LinearTanh' (captured: Dense, Conv2D)"]);
    defaults.release();

    const registry = prepareModel(model, { layerKinds: [...DEFAULT_LAYER_KINDS, LINEAR_TANH_KIND], covariance: true });
    const custom = registry.secondOrder[1]!;
    expect(custom).toMatchObject({ kind: 'linear-tanh', gradientCount: 'rows', inputDim: 5, outputDim: 3, kernelShape: [5, 3] });
    expect(custom.biasName).toBeUndefined();
    expect(registry.firstOrder).toEqual([]);
    expect(registry.describe()).toMatch(/linear-tanh\s+second\s+5 × 3/);
    expect(observe(model, x, weights)).toEqual(plain);

    // Loss Σ R ⊙ tanh(relu(x W₁ + b₁) K): the custom layer's a is the mean of h, g of R ⊙ tanh'(z₂).
    const [w1, b1, k] = model.getWeights().map((w) => w.dataSync());
    const z1 = affine64(matrix(6, 4, x.dataSync()), matrix(4, 5, w1!), b1!);
    const h = activate64(z1, 'relu');
    const z2 = matmul(h, matrix(5, 3, k!));
    const dz2 = preActivationGradient64(z2, matrix(6, 3, weights.dataSync()), 'tanh');
    const statistics = registry.statistics(custom.name)!;
    expect([statistics.rows, statistics.samples, statistics.step]).toEqual([6, 6, 1]);
    expectClose(statistics.a, rowMean64(h), maxAbs(h));
    expectClose(statistics.g, rowMean64(dz2), maxAbs(dz2));
    expect(statistics.covariance?.a.shape).toEqual([5, 5]);
    expect(statistics.covariance?.g.shape).toEqual([3, 3]);

    registry.release();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, weights]);
    model.dispose();
  });

  it('replaces the table: a class left out of it is first-order, naming the classes captured', () => {
    const model = buildModel();
    const registry = prepareModel(model, { layerKinds: [LINEAR_TANH_KIND] });
    expect(registry.secondOrder.map((l) => l.kind)).toEqual(['linear-tanh']);
    const hidden = model.layers[0]!;
    expect(registry.firstOrder).toEqual([
      { name: 'hidden', variables: hidden.weights.map((w) => w.name), reason: "unsupported layer class 'Dense' (captured: LinearTanh)" },
    ]);
    registry.release();
    model.dispose();
  });

  it('refuses a malformed table or entry, naming the entry, and leaves the model unprepared', () => {
    const model = buildModel();
    const withEntry = (entry: object) => () => prepareModel(model, { layerKinds: [...DEFAULT_LAYER_KINDS, entry as LayerKindHandler] });
    expect(() => prepareModel(model, { layerKinds: LINEAR_TANH_KIND as never })).toThrow(/^prepareModel: layerKinds must be an array/);
    expect(withEntry({ ...LINEAR_TANH_KIND, statistics: undefined })).toThrow(
      "prepareModel: layerKinds[2] (kind 'linear-tanh').statistics must be a function, got undefined",
    );
    expect(withEntry({ ...LINEAR_TANH_KIND, gradientCount: 'batch' })).toThrow(/layerKinds\[2\] \(kind 'linear-tanh'\)\.gradientCount must be 'rows' or 'samples'/);
    expect(withEntry({ ...LINEAR_TANH_KIND, kind: '' })).toThrow(/^prepareModel: layerKinds\[2\]\.kind must be a non-empty string/);
    expect(withEntry({ ...LINEAR_TANH_KIND, classNames: 'LinearTanh' })).toThrow(/classNames must be a non-empty array/);
    expect(withEntry({ ...LINEAR_TANH_KIND, classNames: ['Dense'] })).toThrow(/class 'Dense' is already kind 'dense's/);
    expect(withEntry({ ...LINEAR_TANH_KIND, kind: 'dense' })).toThrow(/kind 'dense' is also layerKinds\[0\]'s/);
    expect(withEntry({ ...LINEAR_TANH_KIND, activation: 'tanh' })).toThrow(/\.activation must be a function when given, got string/);
    expect(withEntry({ ...LINEAR_TANH_KIND, statistics: () => ({ input: tf.clone }) })).toThrow(
      /^prepareModel: layer kind 'linear-tanh': statistics\(geometry, options\) must return .* missing outputGradient, inputCovariance, outputGradientCovariance$/,
    );
    const wrongShape = { ...LINEAR_TANH_KIND, describe: (layer: tfl.layers.Layer) => ({ ...LINEAR_TANH_KIND.describe(layer)!, outputDim: 4 }) };
    expect(withEntry(wrongShape)).toThrow(/^prepareModel: layer 'linear_tanh\w*' \(kind 'linear-tanh'\): describe\(layer\) returned inputDim 5 × outputDim 4/);

    // None of the refusals prepared a layer: preparing now succeeds, and the model runs its own code.
    const registry = prepareModel(model, { layerKinds: [...DEFAULT_LAYER_KINDS, LINEAR_TANH_KIND] });
    expect(registry.secondOrder.length).toBe(2);
    registry.release();
    expect(model.layers.some((layer) => Object.hasOwn(layer, 'call'))).toBe(false);
    model.dispose();
  });
});
