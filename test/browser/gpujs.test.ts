/**
 * `@mkor/gpujs-kernels` in Chromium: runs the package's tests in the page (gpu.js WebGL 2 through
 * SwiftShader, and cpu mode; WebGL 1 fails to compile the preconditioning kernels there, see the
 * package's test) as a child `vitest run --config
 * test/browser/gpujs-vitest.config.ts` (vitest browser mode, Debian's Chromium through playwright),
 * and checks from its JSON report that every test ran in each mode and passed. Chromium missing is
 * an error; `MKOR_SKIP_BROWSER=1` skips this, saying so.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { requireChromium, runBrowserVitest, skipBrowser } from './chromium';
import { GPUJS_TEST_FILES } from './gpujs-vitest.config';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
if (skipBrowser) console.warn('MKOR_SKIP_BROWSER=1: the gpu.js kernels tests in Chromium (test/browser) are skipped.');

/** The parts of vitest's JSON report read here. */
interface JsonReport {
  readonly numTotalTests: number;
  readonly numPassedTests: number;
  readonly testResults: readonly { readonly name: string; readonly assertionResults: readonly { readonly status: string; readonly fullName: string }[] }[];
}

describe.skipIf(skipBrowser)('the gpu.js kernels in Chromium', () => {
  it('pass every test in WebGL 2 and cpu mode', async () => {
    requireChromium();
    const folder = mkdtempSync(join(tmpdir(), 'mkor-gpujs-tests-'));
    const reportFile = join(folder, 'report.json');
    try {
      const outcome = await runBrowserVitest(repoRoot, 'test/browser/gpujs-vitest.config.ts', reportFile);
      expect(outcome, 'the Chromium run failed').toBe('');
      const report = JSON.parse(readFileSync(reportFile, 'utf8')) as JsonReport;
      expect(report.testResults.map((file) => file.name.slice(repoRoot.length))).toEqual(GPUJS_TEST_FILES);
      const results = report.testResults.flatMap((file) => file.assertionResults);
      // Only the Node-only test (how to get headless-gl) is skipped in a browser.
      const notPassed = results.filter((test) => test.status !== 'passed').map((test) => `${test.fullName}: ${test.status}`);
      expect(notPassed).toEqual(['createMkorKernels says how to get headless-gl when it is missing: skipped']);
      for (const mode of ['webgl2', 'cpu']) {
        const passed = results.filter((test) => test.status === 'passed' && test.fullName.includes(`mode ${mode} `));
        // Each mode runs the same 58 tests; a run that collected fewer would pass the checks above.
        expect(passed.length, `tests passed in mode ${mode}`).toBe(58);
      }
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });
});
