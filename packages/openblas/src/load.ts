/** Loading the native OpenBLAS gemm, or saying why it is unavailable. */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { checkHeapGemmCall, type HeapGemm } from './heap-gemm';

/** The functions of the compiled addon (`native/mkor_openblas.c`). */
interface OpenBlasAddon {
  gemm(
    memory: Uint8Array,
    aOffset: number,
    bOffset: number,
    cOffset: number,
    batch: number,
    m: number,
    n: number,
    k: number,
    transposeA: boolean,
    transposeB: boolean,
    aBatchStride: number,
    bBatchStride: number,
    cBatchStride: number,
  ): void;
  info(): { threads: number; config: string; coreName: string };
}

/** What {@link loadOpenBlasGemm} returns: the gemm with its library, or why there is none. */
export type OpenBlasGemmLoad = { gemm: HeapGemm; threads: number; library: string } | { gemm: null; reason: string };

const BUILD_HINT =
  'build it with `npm run build:native -w @mkor/openblas` (needs OpenBLAS and a C compiler: ' +
  'Debian/Ubuntu `apt-get install libopenblas-dev build-essential`)';

/** The addon built by `npm run build:native`: `native/build/Release/mkor_openblas.node` in this package. */
export function defaultAddonPath(): string {
  // This file is src/load.ts or a bundle in dist/: the package folder is one level up either way.
  return join(resolve(dirname(fileURLToPath(import.meta.url)), '..'), 'native', 'build', 'Release', 'mkor_openblas.node');
}

function gemmOn(addon: OpenBlasAddon): HeapGemm {
  return (heap, call) => {
    checkHeapGemmCall('openBlasGemm', heap, call);
    addon.gemm(
      new Uint8Array(heap),
      call.aOffset,
      call.bOffset,
      call.cOffset,
      call.batch,
      call.m,
      call.n,
      call.k,
      call.transposeA,
      call.transposeB,
      call.aBatchStride,
      call.bBatchStride,
      call.cBatchStride,
    );
  };
}

const loaded = new Map<string, OpenBlasGemmLoad>();

/**
 * Loads the native OpenBLAS gemm (once per addon path and process): a multi-threaded
 * `cblas_sgemm` that computes {@link HeapGemm} products directly on a given ArrayBuffer (the wasm
 * backend's heap), with OpenBLAS's thread count and configuration string. When the addon was not
 * built or cannot be loaded, returns `{ gemm: null, reason }` with one line saying why and how to
 * build it; it never throws. `addonPath` defaults to {@link defaultAddonPath}.
 */
export function loadOpenBlasGemm(addonPath: string = defaultAddonPath()): OpenBlasGemmLoad {
  const cached = loaded.get(addonPath);
  if (cached !== undefined) return cached;
  let result: OpenBlasGemmLoad;
  if (!existsSync(addonPath)) {
    result = { gemm: null, reason: `@mkor/openblas: the native gemm is not built (${addonPath} does not exist); ${BUILD_HINT}` };
  } else {
    const module = { exports: {} as unknown };
    try {
      process.dlopen(module, addonPath);
      const addon = module.exports as OpenBlasAddon;
      const { threads, config } = addon.info();
      result = { gemm: gemmOn(addon), threads, library: config };
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      result = { gemm: null, reason: `@mkor/openblas: the native gemm ${addonPath} could not be loaded (${detail}); ${BUILD_HINT}` };
    }
  }
  loaded.set(addonPath, result);
  return result;
}
