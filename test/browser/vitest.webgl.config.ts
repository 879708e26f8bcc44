/**
 * The numerical core's key tests run inside Chromium on the webgl backend (vitest browser mode,
 * Debian's Chromium through playwright): the Sherman–Morrison updates against their float64
 * references and Lemma 3.1's positive definiteness, with their checks of tf.memory(). Run by
 * test/browser/numerics-webgl.test.ts, or alone:
 *
 *   npx vitest run --config test/browser/vitest.webgl.config.ts
 */
import repositoryConfig from '../../vitest.config';
import { chromiumTestConfig, repoRoot } from './browser-config';

/** The test files run on webgl, relative to the repository root. */
export const WEBGL_TEST_FILES = ['packages/sherman-morrison/src/sherman-morrison.test.ts', 'packages/sherman-morrison/src/lemma-3-1.test.ts'];

export default chromiumTestConfig(WEBGL_TEST_FILES, { setupFiles: [`${repoRoot}test/browser/webgl-setup.ts`], env: repositoryConfig.test?.env ?? {} });
