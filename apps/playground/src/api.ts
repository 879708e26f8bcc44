/**
 * The page's scripting interface, `window.mkorPlayground` (the Chromium tests drive the page
 * through it), and the backend names it takes. Types only, free of the DOM, so Node code can
 * import them.
 */
import type { OptimizerRun, TrainingSettings } from './train';

/** The backends the page offers, in the order it tries them. */
export const BACKEND_NAMES = ['webgl', 'webgpu', 'wasm', 'cpu'] as const;
/** One of {@link BACKEND_NAMES}. */
export type BackendName = (typeof BACKEND_NAMES)[number];

/** A run asked for by a script; what it leaves out is read from the page's form. */
export interface PageRunRequest extends Partial<TrainingSettings> {
  readonly backend?: BackendName;
  /** On wasm: register `@mkor/wasm-kernels` over tfjs-backend-wasm's kernels (true) or train with tfjs's own (false). */
  readonly wasmKernels?: boolean;
  /** How many training images to load (the first ones of the file). */
  readonly imageLimit?: number;
}

/** What a run returns to a script. */
export interface PageRunOutcome {
  readonly backend: BackendName;
  /** What the backend runs on (the WebGL or WebGPU renderer, the wasm build and its kernels). */
  readonly device: string;
  readonly runs: readonly OptimizerRun[];
  /** `tf.memory().numTensors` before the run and after it (equal when the run leaks nothing). */
  readonly tensorsBefore: number;
  readonly tensorsAfter: number;
}

/** What `probeReadBacks` saw: each read-back's values, or the error it threw. */
export interface ReadBackProbe {
  /** How many synchronous reads were asked for. */
  readonly synchronousReads: number;
  /** `await tensor.data()` of a fresh result on the backend. */
  readonly asynchronous: string;
  /** `tensor.dataSync()` of fresh results (what the optimizers' guards and metrics do): the last one's values, or the first error and its number. */
  readonly synchronous: string;
  /** `await tensor.data()` once more, after the synchronous read: whether the device survived it. */
  readonly asynchronousAfter: string;
}

/** `window.mkorPlayground`. */
export interface PlaygroundApi {
  /** The backends that start in this browser. */
  availableBackends(): Promise<BackendName[]>;
  /** Trains as the Train button does, with `request` overriding the form (which then shows it). */
  run(request?: PageRunRequest): Promise<PageRunOutcome>;
  /** How reading a tensor back works on a backend: asynchronously, synchronously, and asynchronously after that. */
  probeReadBacks(backend: BackendName, synchronousReads?: number): Promise<ReadBackProbe>;
}
