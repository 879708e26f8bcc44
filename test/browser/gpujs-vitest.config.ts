/**
 * The tests of `@mkor/gpujs-kernels` run inside Chromium (vitest browser mode, Debian's Chromium
 * through playwright): the kernels in gpu.js's WebGL 2, WebGL and cpu modes against their float64
 * references, WebGL through SwiftShader. Run by test/browser/gpujs.test.ts, or alone:
 *
 *   npx vitest run --config test/browser/gpujs-vitest.config.ts
 */
import { fileURLToPath } from 'node:url';

import { playwright } from '@vitest/browser-playwright';
import { defineConfig } from 'vitest/config';

import repositoryConfig from '../../vitest.config';
import { CHROMIUM } from './chromium';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/** The test files run in Chromium, relative to the repository root. */
export const GPUJS_TEST_FILES = ['packages/gpujs-kernels/src/kernels.test.ts'];

export default defineConfig({
  root: repoRoot,
  resolve: repositoryConfig.resolve,
  test: {
    include: GPUJS_TEST_FILES,
    testTimeout: 300_000,
    hookTimeout: 300_000,
    browser: {
      enabled: true,
      headless: true,
      screenshotFailures: false,
      provider: playwright({ launchOptions: { executablePath: CHROMIUM, args: ['--no-sandbox'] } }),
      instances: [{ browser: 'chromium' }],
    },
  },
});
