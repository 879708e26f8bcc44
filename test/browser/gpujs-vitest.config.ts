/**
 * The tests of `@mkor/gpujs-kernels` run inside Chromium (vitest browser mode, Debian's Chromium
 * through playwright): the kernels in gpu.js's WebGL 2, WebGL and cpu modes against their float64
 * references, WebGL through SwiftShader. Run by test/browser/gpujs.test.ts, or alone:
 *
 *   npx vitest run --config test/browser/gpujs-vitest.config.ts
 */
import { chromiumTestConfig } from './browser-config';

/** The test files run in Chromium, relative to the repository root. */
export const GPUJS_TEST_FILES = ['packages/gpujs-kernels/src/kernels.test.ts'];

export default chromiumTestConfig(GPUJS_TEST_FILES);
