/**
 * The main entries of `@mkor/allreduce` and `@mkor/data-parallel` bundle for the browser: esbuild
 * with `platform: 'browser'` bundles each from the sources (workspace packages resolved to their
 * `src/index.ts`, tfjs left external as the peer it is) and the build must neither fail on nor
 * leave external any Node built-in (`node:*`, `os`, `worker_threads`, ...).
 */
import { builtinModules } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { build } from 'esbuild';
import type { Plugin } from 'esbuild';
import { describe, expect, it } from 'vitest';

const packagesDir = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const NODE_BUILTINS = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]));

/** Resolves `@mkor/<name>` to `packages/<name>/src/index.ts`, as the tests do. */
const workspaceSources: Plugin = {
  name: 'workspace-sources',
  setup(bundler) {
    bundler.onResolve({ filter: /^@mkor\/[a-z0-9-]+$/ }, (args) => ({
      path: join(packagesDir, args.path.slice('@mkor/'.length), 'src', 'index.ts'),
    }));
  },
};

/** The Node built-ins the browser bundle of `packageName`'s main entry imports (empty when it bundles). */
async function nodeBuiltinsImported(packageName: string): Promise<string[]> {
  const result = await build({
    stdin: { contents: `export * from '${packageName}';`, resolveDir: packagesDir, loader: 'ts' },
    bundle: true,
    write: false,
    platform: 'browser',
    format: 'esm',
    metafile: true,
    logLevel: 'silent',
    external: ['@tensorflow/*'],
    plugins: [workspaceSources],
  });
  return Object.values(result.metafile.inputs)
    .flatMap((input) => input.imports.map((imported) => imported.path))
    .filter((path) => NODE_BUILTINS.has(path));
}

describe('browser bundles of the main entries', () => {
  it.each(['@mkor/allreduce', '@mkor/data-parallel'])('%s bundles for the browser without Node built-ins', async (name) => {
    // A Node built-in makes esbuild fail ("Could not resolve") or, if marked external, shows in the imports.
    await expect(nodeBuiltinsImported(name)).resolves.toEqual([]);
  });

  it('the check sees a Node built-in: the worker-threads entry does not bundle for the browser', async () => {
    const failure = await build({
      entryPoints: [join(packagesDir, 'allreduce', 'src', 'worker-threads', 'index.ts')],
      bundle: true,
      write: false,
      platform: 'browser',
      logLevel: 'silent',
      external: ['@tensorflow/*'],
      plugins: [workspaceSources],
    }).then(
      () => 'bundled',
      (error: Error) => error.message,
    );
    expect(failure).toMatch(/Could not resolve "node:(os|worker_threads)"/);
  });
});
