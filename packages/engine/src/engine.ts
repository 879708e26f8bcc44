/**
 * One way to choose how TensorFlow.js computes in this project: `useEngine(name)`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { checkOneOf } from '@mkor/core';
import { registerWasmKernels, type HeapGemm } from '@mkor/wasm-kernels';

/** The engines {@link useEngine} knows. */
export const engineNames = ['auto', 'wasm', 'wasm-native', 'cpu', 'tensorflow', 'tensorflow-gpu'] as const;

/** An engine name; `'auto'` picks the fastest available. */
export type EngineName = (typeof engineNames)[number];

/** What {@link useEngine} chose. */
export interface EngineChoice {
  /** The name asked for. */
  readonly requested: EngineName;
  /** The engine in use (never `'auto'`). */
  readonly engine: Exclude<EngineName, 'auto'>;
  /** The tfjs backend now active (`tf.getBackend()`). */
  readonly backend: string;
  /** One line on why this engine (and what was tried). */
  readonly reason: string;
}

/** What `@mkor/openblas`'s `loadOpenBlasGemm()` returns. */
export type NativeGemmLoad = { gemm: HeapGemm; threads: number; library: string } | { gemm: null; reason: string };

/** Options of {@link useEngine}, all optional: the defaults are for production use, tests replace the loaders. */
export interface UseEngineOptions {
  /** Where the one fallback line goes (default `console.warn`). */
  readonly log?: (line: string) => void;
  /**
   * Loads the native gemm; default: `loadOpenBlasGemm()` of `@mkor/openblas` when that optional
   * package is installed, else `{ gemm: null, reason }`.
   */
  readonly loadNativeGemm?: () => Promise<NativeGemmLoad>;
  /**
   * Imports a tfjs-node package; default: a dynamic `import()`. Rejects when it is not installed.
   */
  readonly importNodeBackend?: (name: '@tensorflow/tfjs-node' | '@tensorflow/tfjs-node-gpu') => Promise<unknown>;
}

const OPENBLAS_INSTALL =
  'install and build it: `npm install @mkor/openblas && npm run build:native -w @mkor/openblas` in this repository ' +
  '(needs Debian/Ubuntu `libopenblas-dev build-essential`)';

/** The default native loader: `@mkor/openblas` if installed (an optional dependency). */
async function loadOpenBlas(): Promise<NativeGemmLoad> {
  const specifier = '@mkor/openblas';
  let module: { loadOpenBlasGemm(): NativeGemmLoad };
  try {
    module = (await import(specifier)) as typeof module;
  } catch (error) {
    const detail = error instanceof Error ? error.message.split('\n')[0] : String(error);
    return { gemm: null, reason: `@mkor/openblas is not installed (${detail}); ${OPENBLAS_INSTALL}` };
  }
  return module.loadOpenBlasGemm();
}

async function importNodeBackend(name: string): Promise<unknown> {
  return import(name);
}

const nodeBackends = {
  tensorflow: { pkg: '@tensorflow/tfjs-node', backend: 'tensorflow' },
  'tensorflow-gpu': { pkg: '@tensorflow/tfjs-node-gpu', backend: 'tensorflow' },
} as const;

/** Activates a tfjs backend by name, failing loudly when it does not initialise. */
async function activate(backend: string): Promise<void> {
  if (!(await tf.setBackend(backend))) throw new Error(`useEngine: the ${backend} backend failed to initialise`);
  await tf.ready();
}

async function useWasm(gemm: HeapGemm | null): Promise<void> {
  await import('@tensorflow/tfjs-backend-wasm');
  registerWasmKernels({ gemm });
  await activate('wasm');
}

/** Tries a tfjs-node package: the error says how to install it when it is missing. */
async function useNode(engine: 'tensorflow' | 'tensorflow-gpu', options: UseEngineOptions): Promise<void> {
  const { pkg, backend } = nodeBackends[engine];
  try {
    await (options.importNodeBackend ?? importNodeBackend)(pkg);
  } catch (error) {
    const detail = error instanceof Error ? error.message.split('\n')[0] : String(error);
    throw new Error(
      `useEngine: '${engine}' needs ${pkg}, which could not be loaded (${detail}). Install it with ` +
        `\`npm install ${pkg}\`; its install script downloads libtensorflow from storage.googleapis.com, ` +
        `so it needs that host (and for -gpu, CUDA). Use 'wasm-native' or 'wasm' where it cannot install.`,
      { cause: error },
    );
  }
  await activate(backend);
}

/**
 * Chooses the engine TensorFlow.js computes with and makes it the active backend:
 *
 * - `'wasm'`: tfjs-backend-wasm with `@mkor/wasm-kernels` (fast transposed products, Conv2D
 *   gradients);
 * - `'wasm-native'`: the same with every product on OpenBLAS through `@mkor/openblas` (an optional
 *   dependency with a native addon). When that is not installed or built, logs ONE line saying
 *   why and how to build it, and uses `'wasm'`;
 * - `'cpu'`: tfjs-backend-cpu (plain JavaScript, slow, the reference);
 * - `'tensorflow'` / `'tensorflow-gpu'`: `@tensorflow/tfjs-node` / `-node-gpu` (libtensorflow).
 *   They are not dependencies; when one is missing this throws an error saying how to install it;
 * - `'auto'` (default): the fastest available, in the order tensorflow-gpu, tensorflow,
 *   wasm-native, wasm (no line is logged for what is missing).
 *
 * Returns what was chosen and why.
 */
export async function useEngine(name: EngineName = 'auto', options: UseEngineOptions = {}): Promise<EngineChoice> {
  checkOneOf('useEngine', 'name', name, engineNames);
  const log = options.log ?? ((line: string) => console.warn(line));
  const loadNative = options.loadNativeGemm ?? loadOpenBlas;
  const chose = (engine: EngineChoice['engine'], reason: string): EngineChoice => ({
    requested: name,
    engine,
    backend: tf.getBackend(),
    reason,
  });
  switch (name) {
    case 'cpu':
      await import('@tensorflow/tfjs-backend-cpu');
      await activate('cpu');
      return chose('cpu', "asked for 'cpu'");
    case 'wasm':
      await useWasm(null);
      return chose('wasm', "asked for 'wasm': tfjs-backend-wasm with @mkor/wasm-kernels");
    case 'tensorflow':
    case 'tensorflow-gpu':
      await useNode(name, options);
      return chose(name, `asked for '${name}'`);
    case 'wasm-native': {
      const native = await loadNative();
      if ('reason' in native) {
        log(`useEngine: 'wasm-native' unavailable, using 'wasm': ${native.reason}`);
        await useWasm(null);
        return chose('wasm', `'wasm-native' unavailable: ${native.reason}`);
      }
      await useWasm(native.gemm);
      return chose('wasm-native', `OpenBLAS products on the wasm heap (${native.threads} threads, ${native.library})`);
    }
    case 'auto': {
      const skipped: string[] = [];
      for (const engine of ['tensorflow-gpu', 'tensorflow'] as const) {
        try {
          await useNode(engine, options);
          return chose(engine, `auto: ${nodeBackends[engine].pkg} is installed`);
        } catch (error) {
          skipped.push(`${nodeBackends[engine].pkg} not available`);
          if (!(error instanceof Error && error.message.includes('could not be loaded'))) throw error;
        }
      }
      const native = await loadNative();
      if (!('reason' in native)) {
        await useWasm(native.gemm);
        return chose('wasm-native', `auto: ${skipped.join(', ')}; OpenBLAS gemm loaded (${native.threads} threads)`);
      }
      await useWasm(null);
      return chose('wasm', `auto: ${skipped.join(', ')}; no native gemm (${native.reason})`);
    }
  }
}
