import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** What the native `start()` resolves with once `MPI_Init_thread` returned. */
export interface MpiStartInfo {
  readonly rank: number;
  readonly size: number;
  /** The thread support MPI granted: 0 single, 1 funneled, 2 serialized, 3 multiple (Open MPI's values). */
  readonly threadLevel: number;
  readonly libraryVersion: string;
}

/** What the native `close()` resolves with. */
export interface MpiCloseInfo {
  /** Whether `MPI_Finalize` ran. */
  readonly finalized: boolean;
  /** Why it did not, when it did not. */
  readonly message: string;
}

/** The collective kinds, as the addon numbers them. */
export const NATIVE_KIND = { allReduce: 1, broadcast: 2, barrier: 3 } as const;

/** The functions of the compiled addon (`native/mkor_mpi.c`). */
export interface MpiAddon {
  start(): Promise<MpiStartInfo>;
  submit(
    kind: (typeof NATIVE_KIND)[keyof typeof NATIVE_KIND],
    values: Float32Array | undefined,
    op: number,
    wire: number,
    root: number,
    timeoutMs: number,
    checkAgreement: boolean,
  ): Promise<Float32Array | undefined>;
  close(): Promise<MpiCloseInfo>;
  finalizeAtExit(): string;
  /** Sends `notice` to every other rank (for an abnormal exit); returns `'sent'` or why not. */
  notifyExit(notice: string): string;
}

/** How to get a working addon, appended to every {@link MpiUnavailableError}. */
const INSTALL_HINT =
  'To use @mkor/mpi: install Open MPI (Debian/Ubuntu: `apt-get install openmpi-bin libopenmpi-dev`; ' +
  'Fedora: `dnf install openmpi-devel`; macOS: `brew install open-mpi`), build the addon with ' +
  '`npm run build:native -w @mkor/mpi` (node-gyp and a C compiler), and start the program with ' +
  '`mpirun -np <ranks> node <script>`.';

/**
 * The native addon or the Open MPI library it links could not be loaded. The message says which
 * and how to install Open MPI and build the addon.
 */
export class MpiUnavailableError extends Error {
  override readonly name = 'MpiUnavailableError';
  constructor(
    where: string,
    /** The addon file that was tried. */
    readonly addonPath: string,
    /** What went wrong, in a few words. */
    readonly reason: string,
  ) {
    super(`${where}: the Open MPI transport is unavailable: ${reason}. ${INSTALL_HINT}`);
  }
}

/** The addon built by `npm run build:native`: `build/Release/mkor_mpi.node` in this package. */
export function defaultAddonPath(): string {
  // This file is src/addon.ts or a bundle in dist/: the package folder is one level up either way.
  return join(resolve(dirname(fileURLToPath(import.meta.url)), '..'), 'build', 'Release', 'mkor_mpi.node');
}

const loaded = new Map<string, MpiAddon>();

/**
 * Loads the addon at `addonPath` (once per path and process). Throws {@link MpiUnavailableError}
 * when the file is missing, when `libmpi` cannot be found, or when the file is not a loadable addon.
 */
export function loadMpiAddon(where: string, addonPath: string = defaultAddonPath()): MpiAddon {
  const cached = loaded.get(addonPath);
  if (cached !== undefined) return cached;
  if (!existsSync(addonPath)) {
    throw new MpiUnavailableError(where, addonPath, `the native addon was not built (${addonPath} does not exist)`);
  }
  const module = { exports: {} as unknown };
  try {
    process.dlopen(module, addonPath);
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    const reason = /libmpi|libopen-(rte|pal)/.test(detail)
      ? `the Open MPI library could not be loaded (${detail})`
      : `the native addon ${addonPath} could not be loaded (${detail})`;
    throw new MpiUnavailableError(where, addonPath, reason);
  }
  const addon = module.exports as MpiAddon;
  loaded.set(addonPath, addon);
  return addon;
}
