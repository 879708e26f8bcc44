/**
 * Runs the numerical core's key tests inside Chromium on the webgl backend — the Sherman–Morrison
 * updates against their float64 references and Lemma 3.1, each with its tf.memory() check — as a
 * child `vitest run --config test/browser/vitest.webgl.config.ts` (vitest browser mode, Debian's
 * Chromium through playwright), and checks from its JSON report that every test of those files ran
 * and passed. Chromium missing is an error; `MKOR_SKIP_BROWSER=1` skips this, saying so.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { requireChromium, runBrowserVitest, skipBrowser } from './chromium';
import { WEBGL_TEST_FILES } from './vitest.webgl.config';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
if (skipBrowser) console.warn('MKOR_SKIP_BROWSER=1: the numerical core tests on webgl in Chromium (test/browser) are skipped.');

/** The parts of vitest's JSON report read here. */
interface JsonReport {
  readonly numTotalTests: number;
  readonly numPassedTests: number;
  readonly testResults: readonly { readonly name: string; readonly assertionResults: readonly { readonly status: string; readonly fullName: string }[] }[];
}

describe.skipIf(skipBrowser)('the numerical core on webgl in Chromium', () => {
  it('passes every Sherman–Morrison and Lemma 3.1 test', async () => {
    requireChromium();
    const folder = mkdtempSync(join(tmpdir(), 'mkor-webgl-tests-'));
    const reportFile = join(folder, 'report.json');
    try {
      const outcome = await runBrowserVitest(repoRoot, 'test/browser/vitest.webgl.config.ts', reportFile);
      expect(outcome, 'the webgl run failed').toBe('');
      const report = JSON.parse(readFileSync(reportFile, 'utf8')) as JsonReport;
      expect(report.testResults.map((file) => file.name.slice(repoRoot.length)).sort()).toEqual([...WEBGL_TEST_FILES].sort());
      const notPassed = report.testResults.flatMap((file) => file.assertionResults.filter((test) => test.status !== 'passed').map((test) => `${test.fullName}: ${test.status}`));
      expect(notPassed).toEqual([]);
      expect(report.numPassedTests).toBe(report.numTotalTests);
      // Both files hold many tests (34 today); a run that collected none would pass the checks above.
      expect(report.numTotalTests).toBeGreaterThanOrEqual(30);
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });
});
