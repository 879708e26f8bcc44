/**
 * The Chromium the browser tests drive: Debian's (a browser downloaded by a test runner cannot
 * work on these machines), and the two ways the tests treat its absence.
 */
import { existsSync } from 'node:fs';

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
