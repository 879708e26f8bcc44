import type { LayerStatistics } from '@mkor/capture';
import { tensorsIn } from '@mkor/core';
import { type BlockLayer, type BlockStatistics, blockLayer } from '@mkor/second-order';
import {
  type Matrix64,
  blendTowardIdentity64,
  fromTensor,
  identity,
  infNorm,
  inverseFactor64,
  maxAbs,
  relativeError,
  seeded,
  updateInverseFactor64,
} from '@mkor/testing';
import { registerWasmKernels, unregisterWasmKernels } from '@mkor/wasm-kernels';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { type MkorLayerState, mkorBlock, referenceRefresh, stabilizedRefresh } from './block';


const LAYER: BlockLayer = blockLayer({ name: 'dense', kind: 'dense', gradientCount: 'rows', kernelName: 'k', biasName: 'b', inputDim: 3, outputDim: 2, kernelShape: [3, 2] });

/** Block statistics with `a` of length 4 (bias folded in) and `g` of length 2, at a chosen scale. */
function statistics(seed: number, scaleA: number, scaleG: number): BlockStatistics & { dispose(): void } {
  const a = tf.tensor1d(Array.from(seeded(4, seed), (v) => v * scaleA));
  const g = tf.tensor1d(Array.from(seeded(2, seed + 1), (v) => v * scaleG));
  const captured: LayerStatistics = { a: tf.slice(a, 0, 3), g, rows: 1, samples: 1, step: seed };
  return { a, g, captured, dispose: () => tf.dispose([a, g, captured.a]) };
}

/** `tf.tidy` for a result holding a block state (tfjs's types want an index signature). */
function tidyResult<T extends object>(body: () => T): T {
  return tf.tidy(() => body() as unknown as tf.TensorContainer) as unknown as T;
}

function read(flag: boolean | tf.Scalar | undefined): boolean {
  return flag instanceof tf.Tensor ? flag.dataSync()[0] !== 0 : Boolean(flag);
}

describe('referenceRefresh (the authors\u2019 refresh) against their sequential flags in float64', () => {
  it('resets a flagged factor instead of updating it, an input factor over 2 resets the output at once and itself next time', () => {
    const before = tf.memory().numTensors;
    // The authors' loop as their code runs it: booleans set and cleared side by side.
    let input64: Matrix64 = identity(4);
    let output64: Matrix64 = identity(2);
    let resetIn = true;
    let resetOut = true;
    let state: MkorLayerState = { inputInverse: tf.eye(4) as tf.Tensor2D, outputInverse: tf.eye(2) as tf.Tensor2D, resetInput: tf.scalar(1), resetOutput: tf.scalar(1) };
    const seen = { inputResets: 0, outputResets: 0, inputExceeded: 0 };
    for (let refresh = 0; refresh < 24; refresh++) {
      // The paper's form (which the reference preset accepts) grows entries past 2 now and then.
      const s = statistics(10 * refresh, refresh % 3 === 0 ? 0.05 : 0.8, refresh % 4 === 0 ? 0.05 : 1.5);
      const a = Array.from(s.a.dataSync());
      const g = Array.from(s.g.dataSync());
      const expectedInputReset = resetIn;
      if (resetIn) {
        input64 = identity(4);
        resetIn = false;
      } else {
        input64 = updateInverseFactor64(input64, a, 'paper', 0.5);
        if (!(maxAbs(input64) <= 2)) {
          resetIn = true;
          resetOut = true;
          seen.inputExceeded += 1;
        }
      }
      const expectedOutputReset = resetOut;
      if (resetOut) {
        output64 = identity(2);
        resetOut = false;
      } else {
        output64 = updateInverseFactor64(output64, g, 'paper', 0.5);
        if (!(maxAbs(output64) <= 2)) {
          resetIn = true;
          resetOut = true;
        }
      }
      const result = tidyResult(() => {
        const refreshed = referenceRefresh(state, s, { form: 'paper', gamma: 0.5, factorPrecision: 'float32' });
        return { state: refreshed.state, inputReset: refreshed.events!.inputReset as tf.Scalar, outputReset: refreshed.events!.outputReset as tf.Scalar };
      });
      tf.dispose(tensorsIn(state));
      state = result.state;
      expect(read(result.inputReset), `refresh ${refresh}: input reset`).toBe(expectedInputReset);
      expect(read(result.outputReset), `refresh ${refresh}: output reset`).toBe(expectedOutputReset);
      expect(relativeError(inverseFactor64(state.inputInverse), input64)).toBeLessThan(1e-5);
      expect(relativeError(inverseFactor64(state.outputInverse), output64)).toBeLessThan(1e-5);
      expect(state.resetInput!.dataSync()[0]).toBe(resetIn ? 1 : 0);
      expect(state.resetOutput!.dataSync()[0]).toBe(resetOut ? 1 : 0);
      seen.inputResets += expectedInputReset ? 1 : 0;
      seen.outputResets += expectedOutputReset ? 1 : 0;
      tf.dispose([result.inputReset, result.outputReset]);
      s.dispose();
    }
    // The sequence went through every path: first refresh, input over 2, plain updates.
    expect(seen.inputExceeded).toBeGreaterThan(0);
    expect(seen.inputResets).toBeGreaterThan(1);
    expect(seen.outputResets).toBeGreaterThan(1);
    tf.dispose(tensorsIn(state));
    expect(tf.memory().numTensors).toBe(before);
  });
});

/** The paths a dense refresh can take here: tfjs's kernels, and on wasm the fused kernel of @mkor/wasm-kernels. */
const REFRESH_PATHS = tf.getBackend() === 'wasm' ? (['tfjs kernels', 'fused kernel'] as const) : (['tfjs kernels'] as const);

describe('stabilizedRefresh (the paper\u2019s refresh)', () => {
  for (const path of REFRESH_PATHS) {
    it(`blends a factor whose norm passes ε toward I before the update, and reports it on the device (${path})`, () => {
      if (path === 'fused kernel') registerWasmKernels();
      try {
        const before = tf.memory().numTensors;
        const big = tf.tidy(() => tf.mul(tf.eye(4), 5) as tf.Tensor2D);
        const state: MkorLayerState = { inputInverse: big, outputInverse: tf.eye(2) as tf.Tensor2D };
        const s = statistics(3, 1, 1);
        const stabilizer = { epsilon: 4, zeta: 0.5, norm: 'inf' as const };
        const result = tidyResult(() => {
          const refreshed = stabilizedRefresh(state, s, { form: 'exact', gamma: 0.9, factorPrecision: 'float32', stabilizer });
          return { state: refreshed.state, stabilized: refreshed.events!.stabilized as tf.Scalar, reset: refreshed.events!.reset as tf.Scalar };
        });
        const expectedInput = updateInverseFactor64(blendTowardIdentity64(fromTensor(big), 0.5), Array.from(s.a.dataSync()), 'exact', 0.9);
        const expectedOutput = updateInverseFactor64(identity(2), Array.from(s.g.dataSync()), 'exact', 0.9);
        expect(infNorm(fromTensor(big))).toBeGreaterThan(stabilizer.epsilon);
        expect(relativeError(inverseFactor64(result.state.inputInverse), expectedInput)).toBeLessThan(1e-5);
        expect(relativeError(inverseFactor64(result.state.outputInverse), expectedOutput)).toBeLessThan(1e-5);
        expect(read(result.stabilized)).toBe(true);
        expect(read(result.reset)).toBe(false);
        tf.dispose([...tensorsIn(state), ...tensorsIn(result)]);
        s.dispose();
        expect(tf.memory().numTensors).toBe(before);
      } finally {
        if (path === 'fused kernel') unregisterWasmKernels();
      }
    });

    it(`resets a factor that comes out non-finite to I and reports it (${path})`, () => {
      if (path === 'fused kernel') registerWasmKernels();
      try {
        const before = tf.memory().numTensors;
        const state: MkorLayerState = { inputInverse: tf.eye(4) as tf.Tensor2D, outputInverse: tf.eye(2) as tf.Tensor2D };
        const s = statistics(5, 1, Number.NaN);
        const stabilizer = { epsilon: 100, zeta: 0.1, norm: 'inf' as const };
        const result = tidyResult(() => {
          const refreshed = stabilizedRefresh(state, s, { form: 'exact', gamma: 0.9, factorPrecision: 'float32', stabilizer });
          return { state: refreshed.state, reset: refreshed.events!.reset as tf.Scalar };
        });
        expect(read(result.reset)).toBe(true);
        expect(Array.from(inverseFactor64(result.state.outputInverse).data)).toEqual([1, 0, 0, 1]);
        tf.dispose([...tensorsIn(state), ...tensorsIn(result)]);
        s.dispose();
        expect(tf.memory().numTensors).toBe(before);
      } finally {
        if (path === 'fused kernel') unregisterWasmKernels();
      }
    });
  }
});

describe('mkorBlock', () => {
  it('refreshes every f steps and while step < warmupSteps, with γ from its schedule', () => {
    const before = tf.memory().numTensors;
    const gammaAt = (step: number): number => 0.5 + 0.01 * step;
    const block = mkorBlock({ factorUpdateInterval: 3, warmupSteps: 2, gamma: gammaAt, stabilizer: false });
    let state = block.init(LAYER);
    let input64 = identity(4);
    const refreshedAt: number[] = [];
    for (let step = 0; step < 7; step++) {
      const s = statistics(step, 1, 1);
      const absorbed = tidyResult(() => {
        const out = block.absorb(state, s, { step, layer: LAYER });
        return { state: out.state, consumed: out.consumed };
      });
      if (absorbed.consumed) {
        refreshedAt.push(step);
        input64 = updateInverseFactor64(input64, Array.from(s.a.dataSync()), 'exact', gammaAt(step));
        tf.dispose(tensorsIn(state));
      }
      state = absorbed.state;
      expect(relativeError(inverseFactor64(state.inputInverse), input64)).toBeLessThan(1e-5);
      s.dispose();
    }
    expect(refreshedAt).toEqual([0, 1, 3, 6]);
    tf.dispose(tensorsIn(state));
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses bad options and schedule values, naming the caller', () => {
    expect(() => mkorBlock({ gamma: 1 })).toThrow('mkorBlock: gamma must be (0, 1), got 1');
    expect(() => mkorBlock({ preset: 'reference', stabilizer: { epsilon: 1, zeta: 0.5, norm: 'inf' } }, 'MkorOptimizer')).toThrow(
      'MkorOptimizer: the reference preset resets factors above 2 instead of stabilising them: stabilizer cannot be set with it',
    );
    expect(() => mkorBlock({ rescale: 'none' } as never)).toThrow("mkorBlock: unknown option 'rescale' (renamed 'scaling')");
    const block = mkorBlock({ gamma: () => 2 });
    const state = block.init(LAYER);
    const s = statistics(1, 1, 1);
    expect(() => block.absorb(state, s, { step: 0, layer: LAYER })).toThrow('mkorBlock: gamma must be (0, 1), got 2 (from its schedule at step 0)');
    tf.dispose(tensorsIn(state));
    s.dispose();
  });
});
