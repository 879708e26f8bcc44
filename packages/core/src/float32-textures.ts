/**
 * Second-order state needs float32 storage. On tfjs-backend-webgl a device without float32 render
 * targets (or `WEBGL_FORCE_F16_TEXTURES`) stores every tensor in half-float textures: 11
 * significant bits, largest value 65504. An inverse factor kept by Sherman–Morrison rank-1 updates,
 * `F⁻¹ ← (1/γ)F⁻¹ − ((1−γ)/γ²)·(F⁻¹v)(F⁻¹v)ᵀ / (1 + ((1−γ)/γ)·vᵀF⁻¹v)` (MKOR's factor momentum,
 * eq. 3/4, inverted), subtracts a rank-1 term from it at every update; with a relative rounding
 * error of about 1e-3 per entry the small eigenvalues are lost to cancellation, the factor stops
 * being positive definite (which Lemma 3.1 guarantees in exact arithmetic) and the preconditioned
 * step can point uphill.
 */
import * as tf from '@tensorflow/tfjs-core';

/** What {@link requireFloat32Textures} reads: the active backend's name and tfjs's boolean environment flags. */
export interface TextureEnvironment {
  /** The active backend (`tf.getBackend()`; undefined or null before any backend was chosen). */
  readonly backend: string | null | undefined;
  /** A boolean flag of `tf.env()`, e.g. `WEBGL_RENDER_FLOAT32_ENABLED` (registered by tfjs-backend-webgl). */
  readonly flag: (name: string) => boolean;
}

/** The environment of this tfjs: `tf.getBackend()` (which starts no backend) and `tf.env().getBool`. */
function tfjsTextureEnvironment(): TextureEnvironment {
  return { backend: tf.getBackend(), flag: (name) => tf.env().getBool(name) };
}

/**
 * Throws when the active backend is webgl with half-float textures only
 * (`WEBGL_RENDER_FLOAT32_ENABLED` false, or `WEBGL_FORCE_F16_TEXTURES` true), saying why
 * second-order state cannot live there and what to do; does nothing on any other backend. `where`
 * names the caller in the error (e.g. `'MkorOptimizer'`). `environment` defaults to this tfjs's.
 */
export function requireFloat32Textures(where: string, environment: TextureEnvironment = tfjsTextureEnvironment()): void {
  if (environment.backend !== 'webgl') return;
  const forced = environment.flag('WEBGL_FORCE_F16_TEXTURES');
  if (!forced && environment.flag('WEBGL_RENDER_FLOAT32_ENABLED')) return;
  const cause = forced ? 'WEBGL_FORCE_F16_TEXTURES is set' : 'this device cannot render to float32 textures (WEBGL_RENDER_FLOAT32_ENABLED is false)';
  throw new Error(
    `${where}: the webgl backend stores tensors in half-float (16-bit) textures here: ${cause}. ` +
      'Second-order optimizers update inverse factors with Sherman–Morrison rank-1 steps; in half floats their rounding ' +
      'errors accumulate until the factors lose positive definiteness and the steps diverge, so they need float32. ' +
      (forced
        ? "Unset it (tf.env().set('WEBGL_FORCE_F16_TEXTURES', false) before the webgl backend starts), "
        : 'Use a device with float32 render targets (WebGL 2 with EXT_color_buffer_float), ') +
      "or another backend: await tf.setBackend('wasm') (or 'webgpu', 'cpu'). First-order optimizers such as Adam can stay on this one.",
  );
}
