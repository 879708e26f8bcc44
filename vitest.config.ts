import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const repoRoot = fileURLToPath(new URL('.', import.meta.url));

/**
 * fast-check's seed for this run: FC_SEED when set (an integer, or `random` for a fresh seed per
 * property), else one derived from the commit under test, so a commit's property tests draw the
 * same cases on every machine (a failure seen once is seen again) while each commit explores
 * new ones. Outside a git checkout: `random`.
 */
function propertySeed(): string {
  if (process.env.FC_SEED !== undefined) return process.env.FC_SEED;
  try {
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return String(Number.parseInt(head.slice(0, 7), 16));
  } catch {
    return 'random';
  }
}

/**
 * One test configuration for the whole repository. Packages run it from their own folder
 * (`vitest run --config ../../vitest.config.ts`); the root runs it for `test/`.
 * Workspace packages resolve to their sources, so tests need no build.
 * The backend comes from MKOR_TEST_BACKEND (`wasm`, the default, or `cpu`); fast-check's seed
 * from {@link propertySeed}.
 */
export default defineConfig({
  root: process.cwd(),
  resolve: {
    alias: [
      { find: /^@mkor\/([a-z0-9-]+)$/, replacement: `${repoRoot}packages/$1/src/index.ts` },
      // Subpath entries, e.g. @mkor/allreduce/worker-threads.
      { find: /^@mkor\/([a-z0-9-]+)\/([a-z0-9-]+)$/, replacement: `${repoRoot}packages/$1/src/$2/index.ts` },
    ],
  },
  test: {
    include: ['**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    setupFiles: [`${repoRoot}test/setup/backend.ts`],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: 'forks',
    env: { FC_SEED: propertySeed() },
  },
});
