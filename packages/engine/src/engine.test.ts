import * as tf from '@tensorflow/tfjs-core';
import { seededTensor } from '@mkor/testing';
import { jsHeapGemm, unregisterWasmKernels, wasmKernelsRegistered, type HeapGemm } from '@mkor/wasm-kernels';
import { afterAll, describe, expect, it } from 'vitest';
import { useEngine, type NativeGemmLoad } from './engine';

const testBackend = tf.getBackend();
afterAll(async () => {
  unregisterWasmKernels();
  await tf.setBackend(testBackend);
});

const missing = (name: string) => Promise.reject(new Error(`Cannot find package '${name}'`));
const notBuilt = async (): Promise<NativeGemmLoad> => ({ gemm: null, reason: 'the addon is not built; build it with X' });

async function installed(name: string): Promise<boolean> {
  try {
    await import(/* @vite-ignore */ name);
    return true;
  } catch {
    return false;
  }
}
const hasTfjsNode = await installed('@tensorflow/tfjs-node');
if (!hasTfjsNode) {
  console.log("engine: the real 'tensorflow' engine test is skipped: @tensorflow/tfjs-node is not installed (it cannot install without storage.googleapis.com)");
}

describe('useEngine', () => {
  it("'wasm-native' without a native gemm falls back to 'wasm' with exactly one line saying why", async () => {
    const lines: string[] = [];
    const before = tf.memory().numTensors;
    const choice = await useEngine('wasm-native', { log: (l) => lines.push(l), loadNativeGemm: notBuilt });
    expect(choice).toMatchObject({ requested: 'wasm-native', engine: 'wasm', backend: 'wasm' });
    expect(choice.reason).toContain('the addon is not built');
    expect(lines).toEqual([`useEngine: 'wasm-native' unavailable, using 'wasm': the addon is not built; build it with X`]);
    expect(tf.getBackend()).toBe('wasm');
    expect(wasmKernelsRegistered()).toBe(true);
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeDefined();
    expect(tf.memory().numTensors).toBe(before);
  });

  it("'wasm-native' with the default loader: OpenBLAS when built, else the one fallback line naming the build command", async () => {
    const lines: string[] = [];
    const choice = await useEngine('wasm-native', { log: (l) => lines.push(l) });
    if (choice.engine === 'wasm-native') {
      expect(lines).toEqual([]);
      expect(choice.reason).toMatch(/OpenBLAS products on the wasm heap \(\d+ threads/);
    } else {
      expect(choice.engine).toBe('wasm');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/build:native -w @mkor\/openblas/);
    }
  });

  it("'wasm-native' computes the products with the loaded gemm", async () => {
    let calls = 0;
    const gemm: HeapGemm = (heap, call) => {
      calls++;
      jsHeapGemm(heap, call);
    };
    const choice = await useEngine('wasm-native', {
      loadNativeGemm: async () => ({ gemm, threads: 1, library: 'test gemm' }),
    });
    expect(choice).toMatchObject({ engine: 'wasm-native', backend: 'wasm' });
    const [a, b] = [seededTensor([7, 5], 1), seededTensor([7, 3], 2)];
    const c = tf.matMul(a, b, true, false);
    expect(calls).toBe(1);
    const [av, bv, cv] = [a.arraySync() as number[][], b.arraySync() as number[][], c.arraySync() as number[][]];
    for (let i = 0; i < 5; i++) {
      for (let j = 0; j < 3; j++) {
        let [sum, abs] = [0, 0];
        for (let l = 0; l < 7; l++) [sum, abs] = [sum + av[l]![i]! * bv[l]![j]!, abs + Math.abs(av[l]![i]! * bv[l]![j]!)];
        expect(Math.abs(cv[i]![j]! - sum)).toBeLessThanOrEqual(2 ** -24 * 2 * abs);
      }
    }
    tf.dispose([a, b, c]);
  });

  it("'wasm' and 'cpu' activate their backends", async () => {
    expect(await useEngine('wasm')).toMatchObject({ engine: 'wasm', backend: 'wasm' });
    expect(await useEngine('cpu')).toMatchObject({ engine: 'cpu', backend: 'cpu' });
  });

  it("'tensorflow' and 'tensorflow-gpu' fail with how to install them when missing", async () => {
    await expect(useEngine('tensorflow', { importNodeBackend: missing })).rejects.toThrow(
      /useEngine: 'tensorflow' needs @tensorflow\/tfjs-node, .*npm install @tensorflow\/tfjs-node/,
    );
    await expect(useEngine('tensorflow-gpu', { importNodeBackend: missing })).rejects.toThrow(
      /npm install @tensorflow\/tfjs-node-gpu/,
    );
  });

  it("'auto' takes the fastest available: tfjs-node, else wasm-native, else wasm, logging nothing", async () => {
    const lines: string[] = [];
    const log = (l: string) => lines.push(l);
    const wasm = await useEngine('auto', { log, importNodeBackend: missing, loadNativeGemm: notBuilt });
    expect(wasm).toMatchObject({ requested: 'auto', engine: 'wasm', backend: 'wasm' });
    expect(wasm.reason).toContain('@tensorflow/tfjs-node not available');
    const native = await useEngine('auto', {
      log,
      importNodeBackend: missing,
      loadNativeGemm: async () => ({ gemm: jsHeapGemm, threads: 2, library: 'test' }),
    });
    expect(native.engine).toBe('wasm-native');
    expect(lines).toEqual([]);
  });

  it.skipIf(!hasTfjsNode)("'tensorflow' activates tfjs-node when it is installed", async () => {
    expect(await useEngine('tensorflow')).toMatchObject({ engine: 'tensorflow', backend: 'tensorflow' });
  });

  it('refuses an unknown engine, naming the function and parameter', async () => {
    await expect(useEngine('gpu' as never)).rejects.toThrow(/useEngine: name must be one of 'auto', 'wasm'/);
  });
});
