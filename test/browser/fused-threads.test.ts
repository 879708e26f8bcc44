/**
 * `@mkor/wasm-kernels`' fused kernels in Chromium on tfjs-backend-wasm's threaded build: the page
 * (test/browser/fused-page) is served cross-origin isolated, so tfjs loads the build whose memory
 * is shared and imported (`wasmMemory`) instead of exported (`asm.memory`), and whose `HEAPU8` is
 * refreshed only lazily after the memory grows. The same computations run with the fused kernels
 * and without them; finite flags and norms must agree, MKOR + Adam must train to the same weights
 * up to the rescale's last bits, nothing may leak, and a memory growth must not break them.
 */
import { fileURLToPath } from 'node:url';

import { type Browser, chromium } from 'playwright-core';
import { type ViteDevServer, createServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CHROMIUM, requireChromium, skipBrowser } from './chromium';
import type { FusedPageReport } from './fused-page/main';

if (skipBrowser) console.log('fused-threads: skipped (MKOR_SKIP_BROWSER=1)');

describe.skipIf(skipBrowser)('fused kernels in Chromium on the threaded wasm build', () => {
  let server: ViteDevServer;
  let browser: Browser;
  let report: FusedPageReport;

  beforeAll(async () => {
    requireChromium();
    const headers = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
    server = await createServer({
      root: fileURLToPath(new URL('./fused-page/', import.meta.url)),
      configFile: false,
      logLevel: 'warn',
      server: { host: '127.0.0.1', port: 0, headers },
    });
    await server.listen();
    const url = server.resolvedUrls?.local[0];
    if (url === undefined) throw new Error('the vite server gave no local URL');
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(String(error)));
    await page.goto(`${url}index.html`);
    await page.waitForFunction(() => typeof (globalThis as unknown as { compareFusedKernels?: unknown }).compareFusedKernels === 'function', null, { timeout: 120_000 });
    report = await page.evaluate(() => (globalThis as unknown as { compareFusedKernels: () => Promise<FusedPageReport> }).compareFusedKernels());
    expect(errors).toEqual([]);
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('runs on the threaded build: the page is cross-origin isolated and the memory is shared', () => {
    expect(report.crossOriginIsolated).toBe(true);
    expect(report.sharedMemory).toBe(true);
    expect(report.passes.map((p) => p.fused)).toEqual([true, false]);
  });

  it('gives the same flags and norms with and without the fused kernels, also after the memory grew', () => {
    for (const pass of report.passes) {
      expect(pass.flags).toEqual([1, 0]);
      expect(pass.norm).toBe(5);
      expect(pass.normAfterGrowth).toBe(5);
      expect(pass.leakedTensors).toBe(0);
    }
  });

  it('trains MKOR + Adam to the same weights up to the rescale factor\u2019s last bits', () => {
    const [fused, plain] = report.passes as [FusedPageReport['passes'][number], FusedPageReport['passes'][number]];
    expect(fused.losses[11]!).toBeLessThan(fused.losses[0]!);
    const scale = Math.max(...plain.weights.map(Math.abs));
    const worst = Math.max(...fused.weights.map((w, i) => Math.abs(w - plain.weights[i]!)));
    expect(worst).toBeLessThanOrEqual(1e-5 * scale);
  });
});
