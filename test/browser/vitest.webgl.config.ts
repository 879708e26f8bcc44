/**
 * The numerical core's key tests run inside Chromium on the webgl backend (vitest browser mode,
 * Debian's Chromium through playwright): the Sherman–Morrison updates against their float64
 * references and Lemma 3.1's positive definiteness, with their checks of tf.memory(). Run by
 * test/browser/numerics-webgl.test.ts, or alone:
 *
 *   npx vitest run --config test/browser/vitest.webgl.config.ts
 */
import { fileURLToPath } from 'node:url';

import { playwright } from '@vitest/browser-playwright';
import { defineConfig } from 'vitest/config';

import repositoryConfig from '../../vitest.config';
import { CHROMIUM } from './chromium';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/** The test files run on webgl, relative to the repository root. */
export const WEBGL_TEST_FILES = ['packages/sherman-morrison/src/sherman-morrison.test.ts', 'packages/sherman-morrison/src/lemma-3-1.test.ts'];

export default defineConfig({
  root: repoRoot,
  resolve: repositoryConfig.resolve,
  test: {
    include: WEBGL_TEST_FILES,
    setupFiles: [`${repoRoot}test/browser/webgl-setup.ts`],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    env: repositoryConfig.test?.env ?? {},
    browser: {
      enabled: true,
      headless: true,
      screenshotFailures: false,
      provider: playwright({ launchOptions: { executablePath: CHROMIUM, args: ['--no-sandbox'] } }),
      instances: [{ browser: 'chromium' }],
    },
  },
});
