/**
 * The vitest configuration of a run inside Chromium (vitest browser mode, Debian's Chromium
 * through playwright, headless): what test/browser's child runs share.
 */
import { fileURLToPath } from 'node:url';

import { playwright } from '@vitest/browser-playwright';
import { type ViteUserConfig, defineConfig } from 'vitest/config';

import repositoryConfig from '../../vitest.config';
import { CHROMIUM } from './chromium';

/** The repository root, with a trailing slash. */
export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/**
 * A configuration that runs `include` (paths relative to the repository root) in Chromium, with
 * the repository's module resolution (workspace packages from their sources), 300 s timeouts and,
 * when given, `setupFiles` and `env`.
 */
export function chromiumTestConfig(include: readonly string[], extra: { setupFiles?: string[]; env?: Partial<NodeJS.ProcessEnv> } = {}): ViteUserConfig {
  return defineConfig({
    root: repoRoot,
    resolve: repositoryConfig.resolve,
    test: {
      include: [...include],
      ...extra,
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
}
