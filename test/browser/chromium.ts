/**
 * The Chromium the browser tests drive: Debian's (a browser downloaded by a test runner cannot
 * work on these machines), and the two ways the tests treat its absence.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';

/** Debian's Chromium (`apt-get install chromium`, done by scripts/install-system-deps.sh). */
export const CHROMIUM = '/usr/bin/chromium';

/** `MKOR_SKIP_BROWSER=1`: the browser tests are skipped (each file says so once). */
export const skipBrowser = process.env.MKOR_SKIP_BROWSER === '1';

/** Throws, saying how to install it or skip the tests, when {@link CHROMIUM} is missing. */
export function requireChromium(): void {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is missing: no ${CHROMIUM}. Install Debian's chromium (bash scripts/install-system-deps.sh), or set MKOR_SKIP_BROWSER=1 to skip the browser tests.`);
  }
}

/**
 * Runs vitest with `config` (a browser-mode configuration, relative to `repoRoot`) in a child
 * process, writing its JSON report to `reportFile`; returns '' when it passed, else the tail of
 * its output. On a fresh clone Vite discovers and optimizes the page's dependencies during the
 * first run and reloads it ("Vite unexpectedly reloaded a test"); then it runs once more, finding
 * them optimized.
 */
export async function runBrowserVitest(repoRoot: string, config: string, reportFile: string): Promise<string> {
  const vitest = `${repoRoot}node_modules/vitest/vitest.mjs`;
  const run = () =>
    promisify(execFile)(process.execPath, [vitest, 'run', '--config', config, '--reporter=json', `--outputFile=${reportFile}`], {
      cwd: repoRoot,
      maxBuffer: 64 * 1024 * 1024,
    }).then(
      () => '',
      (error: { stdout?: string; stderr?: string }) => `${error.stdout ?? ''}${error.stderr ?? ''}`.slice(-4000),
    );
  const outcome = await run();
  return outcome.includes('Vite unexpectedly reloaded') ? run() : outcome;
}
