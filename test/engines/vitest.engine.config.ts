/**
 * MKOR's step tests against their float64 mirrors, run on the engine named by MKOR_ENGINE
 * (`useEngine`, e.g. 'tensorflow' for @tensorflow/tfjs-node) instead of the wasm backend. Run by
 * test/engines/tensorflow-engines.test.ts, or alone:
 *
 *   MKOR_ENGINE=tensorflow npx vitest run --config test/engines/vitest.engine.config.ts
 */
import { fileURLToPath } from 'node:url';

import { defineConfig } from 'vitest/config';

import repositoryConfig from '../../vitest.config';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The test files run on the engine, relative to the repository root: MKOR's block step by step
 * against a float64 mirror, and the MkorOptimizer with the reference preset against a float64
 * mirror of the authors' code.
 */
export const ENGINE_TEST_FILES = ['packages/mkor/src/mkor.test.ts', 'test/integration/reference-preset.test.ts'];

export default defineConfig({
  root: repoRoot,
  resolve: repositoryConfig.resolve,
  test: {
    include: ENGINE_TEST_FILES,
    setupFiles: [`${repoRoot}test/setup/backend.ts`, `${repoRoot}test/engines/engine-setup.ts`],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: 'forks',
    env: repositoryConfig.test?.env ?? {},
  },
});
