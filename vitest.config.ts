import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const repoRoot = fileURLToPath(new URL('.', import.meta.url));

/**
 * One test configuration for the whole repository. Packages run it from their own folder
 * (`vitest run --config ../../vitest.config.ts`); the root runs it for `test/`.
 * Workspace packages resolve to their sources, so tests need no build.
 * The backend comes from MKOR_TEST_BACKEND (`wasm`, the default, or `cpu`).
 */
export default defineConfig({
  root: process.cwd(),
  resolve: {
    alias: [{ find: /^@mkor\/([a-z0-9-]+)$/, replacement: `${repoRoot}packages/$1/src/index.ts` }],
  },
  test: {
    include: ['**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    setupFiles: [`${repoRoot}test/setup/backend.ts`],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: 'forks',
  },
});
