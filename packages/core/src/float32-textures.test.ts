import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { type TextureEnvironment, requireFloat32Textures } from './float32-textures';

/** A stubbed environment: `backend`, and the two webgl flags (any other flag read is an error of the test). */
function environment(backend: string | null, flags: { render32: boolean; forceF16: boolean }): TextureEnvironment & { read: string[] } {
  const read: string[] = [];
  return {
    backend,
    read,
    flag: (name) => {
      read.push(name);
      if (name === 'WEBGL_RENDER_FLOAT32_ENABLED') return flags.render32;
      if (name === 'WEBGL_FORCE_F16_TEXTURES') return flags.forceF16;
      throw new Error(`unexpected flag ${name}`);
    },
  };
}

describe('requireFloat32Textures', () => {
  it('accepts webgl with float32 textures', () => {
    expect(() => requireFloat32Textures('Caller', environment('webgl', { render32: true, forceF16: false }))).not.toThrow();
  });

  it('refuses webgl without float32 render targets, naming the caller, the flag, the reason and what to do', () => {
    const call = () => requireFloat32Textures('MkorOptimizer', environment('webgl', { render32: false, forceF16: false }));
    expect(call).toThrow(/^MkorOptimizer: the webgl backend stores tensors in half-float \(16-bit\) textures/);
    expect(call).toThrow(/WEBGL_RENDER_FLOAT32_ENABLED is false/);
    expect(call).toThrow(/lose positive definiteness/);
    expect(call).toThrow(/EXT_color_buffer_float.*tf\.setBackend\('wasm'\)/);
  });

  it('refuses webgl with WEBGL_FORCE_F16_TEXTURES set, even where float32 was found earlier, and says to unset it', () => {
    // tfjs evaluates WEBGL_RENDER_FLOAT32_ENABLED once: a flag forced after that leaves it true.
    const call = () => requireFloat32Textures('KfacOptimizer', environment('webgl', { render32: true, forceF16: true }));
    expect(call).toThrow(/^KfacOptimizer: .*WEBGL_FORCE_F16_TEXTURES is set/);
    expect(call).toThrow(/tf\.env\(\)\.set\('WEBGL_FORCE_F16_TEXTURES', false\)/);
  });

  it('reads no webgl flag on other backends, or before any backend was chosen', () => {
    for (const backend of ['wasm', 'cpu', 'webgpu', 'tensorflow', null]) {
      const stub = environment(backend, { render32: false, forceF16: true });
      expect(() => requireFloat32Textures('Caller', stub)).not.toThrow();
      expect(stub.read, String(backend)).toEqual([]);
    }
  });

  it("by default reads this tfjs: the test backend (wasm or cpu) passes, and no tensor is made", () => {
    const before = tf.memory().numTensors;
    expect(['wasm', 'cpu']).toContain(tf.getBackend());
    expect(() => requireFloat32Textures('Caller')).not.toThrow();
    expect(tf.memory().numTensors).toBe(before);
  });
});
