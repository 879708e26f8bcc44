/**
 * The playground (apps/playground) in real Chromium: Debian's `chromium` driven by playwright-core,
 * headless, WebGL and WebGPU through SwiftShader. The page is built with Vite and served with
 * `vite preview` (cross-origin isolated, Fashion-MNIST from the local copy); the tests train in it
 * through `window.mkorPlayground` and compare MKOR's weights with the same training code run in
 * Node on the wasm backend. Chromium missing is an error (install it with
 * `bash scripts/install-system-deps.sh`); `MKOR_SKIP_BROWSER=1` skips these tests, saying so.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadFashionMnist } from '@mkor/datasets';
import * as tf from '@tensorflow/tfjs-core';
import { type Browser, type Page, chromium } from 'playwright-core';
import { type PreviewServer, build, preview } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CHROMIUM, requireChromium, skipBrowser } from './chromium';
import type { BackendName, PageRunOutcome, PageRunRequest, PlaygroundApi } from '../../apps/playground/src/api';
import { buildModel } from '../../apps/playground/src/model';
import { DEFAULT_LEARNING_RATES } from '../../apps/playground/src/optimizers';
import { type OptimizerRun, type TrainingSettings, trainSideBySide } from '../../apps/playground/src/train';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const appRoot = join(repoRoot, 'apps', 'playground');
if (skipBrowser) console.warn('MKOR_SKIP_BROWSER=1: the playground tests in Chromium (test/browser) are skipped.');

/** What every comparison trains: MKOR on the MLP, 30 steps of 128 images (the first 3,840 of the file, none twice). */
const comparison: TrainingSettings = {
  model: 'MLP',
  optimizers: ['MKOR'],
  learningRates: DEFAULT_LEARNING_RATES,
  switchChoice: { kind: 'loss-rate' },
  steps: 30,
  batchSize: 128,
  hidden: 128,
  seed: 1,
  keepWeights: true,
};
const IMAGES = 4000;

/** ‖a − b‖₂ over all entries. */
function distance(a: readonly number[], b: readonly number[]): number {
  return Math.sqrt(a.reduce((sum, value, i) => sum + (value - (b[i] as number)) ** 2, 0));
}

/** For each weight tensor, ‖W − reference‖ / ‖reference − initial‖: a difference measured in units of how far training moved it. */
function relativeDistances(weights: readonly number[][], reference: readonly number[][], initial: readonly number[][]): number[] {
  return reference.map((target, i) => distance(weights[i] as number[], target) / distance(target, initial[i] as number[]));
}

/** Whether the loss fell: the mean of the last five losses is at most `fraction` of the first. */
function lossFell(run: OptimizerRun, fraction: number): boolean {
  const losses = run.records.map((record) => record.loss);
  const last = losses.slice(-5);
  return last.reduce((sum, loss) => sum + loss, 0) / last.length <= fraction * (losses[0] as number);
}

/** Mean milliseconds per step after the first (which compiles the WebGL and WebGPU shaders), for the log. */
function msPerStep(run: OptimizerRun): string {
  const later = run.records.slice(1);
  return `${run.name} ${(later.reduce((sum, record) => sum + record.stepMs, 0) / Math.max(1, later.length)).toFixed(0)} ms/step (first step ${run.records[0]?.stepMs.toFixed(0)} ms)`;
}

describe.skipIf(skipBrowser)('the playground in Chromium', () => {
  let outDir = '';
  let server: PreviewServer | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let backends: BackendName[] = [];
  /** Node (wasm backend): the initial weights, and MKOR's after `steps − 1` and `steps` steps. */
  let initial: number[][] = [];
  let nodeBefore: number[][] = [];
  let nodeAfter: number[][] = [];

  let url = '';
  const runInPage = (request: PageRunRequest, on: Page = page): Promise<PageRunOutcome> =>
    on.evaluate((r) => (globalThis as unknown as { mkorPlayground: PlaygroundApi }).mkorPlayground.run(r), request);
  /** A new tab on the page, `query` appended to its URL (e.g. tfjs flags), ready to run. */
  const openPage = async (query = ''): Promise<Page> => {
    const opened = await (browser as Browser).newPage({ viewport: { width: 1400, height: 900 } });
    await opened.goto(`${url}${query}`);
    await opened.waitForSelector('body[data-ready="true"]');
    return opened;
  };

  beforeAll(async () => {
    requireChromium();
    const data = loadFashionMnist({ trainLimit: IMAGES, testLimit: 1 }).train;
    const model = buildModel(comparison);
    initial = model.getWeights().map((weight) => Array.from(weight.dataSync()));
    model.dispose();
    const tensorsBefore = tf.memory().numTensors;
    nodeBefore = (await trainSideBySide(data, { ...comparison, steps: comparison.steps - 1 }))[0]?.weights ?? [];
    nodeAfter = (await trainSideBySide(data, comparison))[0]?.weights ?? [];
    expect(tf.memory().numTensors, 'tensors left by the Node runs').toBe(tensorsBefore);

    outDir = mkdtempSync(join(tmpdir(), 'mkor-playground-'));
    const configFile = join(appRoot, 'vite.config.ts');
    await build({ root: appRoot, configFile, logLevel: 'warn', build: { outDir, emptyOutDir: true } });
    server = await preview({ root: appRoot, configFile, logLevel: 'warn', build: { outDir }, preview: { host: '127.0.0.1', port: 0 } });
    const local = server.resolvedUrls?.local[0];
    if (local === undefined) throw new Error('vite preview gave no local URL');
    url = local;
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--enable-unsafe-webgpu'] });
    page = await openPage();
    backends = await page.evaluate(() => (globalThis as unknown as { mkorPlayground: PlaygroundApi }).mkorPlayground.availableBackends());
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    if (outDir !== '') rmSync(outDir, { recursive: true, force: true });
  });

  it('offers the webgl and wasm backends', () => {
    console.log(`backends in Chromium: ${backends.join(', ')}`);
    expect(backends).toEqual(expect.arrayContaining(['webgl', 'wasm']));
  });

  it('trains MKOR on wasm in the page to exactly the weights Node trains on wasm', async () => {
    // The same tfjs-backend-wasm binary runs the same float32 kernels in the same order in both
    // (threads split a product's outputs, not its sums), on the same data and initial weights;
    // Node's tests run tfjs-backend-wasm's own kernels, so the page does too here.
    const outcome = await runInPage({ ...comparison, backend: 'wasm', wasmKernels: false, imageLimit: IMAGES });
    expect(outcome.device).toContain('tfjs-backend-wasm as shipped');
    const run = outcome.runs[0] as OptimizerRun;
    expect(outcome.tensorsAfter, 'tensors left in the page').toBe(outcome.tensorsBefore);
    expect(run.records).toHaveLength(comparison.steps);
    expect(lossFell(run, 0.5), `losses ${run.records.map((r) => r.loss.toFixed(3)).join(' ')}`).toBe(true);
    console.log(`wasm (${outcome.device}): ${msPerStep(run)}`);
    expect(run.weights).toEqual(nodeAfter);
  });

  /**
   * MKOR trained in the page on a GPU backend lands within 2% (of how far training moved each
   * weight) of Node's wasm weights. These backends compute in float32 too (the page checks that
   * webgl renders to float32 textures), but sum in another order and have their own exp and log;
   * over 30 steps those rounding differences grow through the factors' updates and Adam's division
   * by √v. Measured on SwiftShader: webgl at most 1.3e-2 of ‖W_node − W_0‖ (the second hidden
   * kernel) in session 5, 6.7e-6 on 2026-12-03; webgpu see the log. The bound, 2e-2, lies below
   * what one step of training moves each weight (2.6e-2 to 3.0e-2, checked): a page that took one
   * step more or less, or trained on other images, fails.
   */
  async function expectNodeWeights(backend: 'webgl' | 'webgpu', device: RegExp): Promise<void> {
    const tolerance = 2e-2;
    const outcome = await runInPage({ ...comparison, backend, imageLimit: IMAGES });
    const run = outcome.runs[0] as OptimizerRun;
    expect(outcome.device).toMatch(device);
    expect(outcome.tensorsAfter, 'tensors left in the page').toBe(outcome.tensorsBefore);
    expect(run.records).toHaveLength(comparison.steps);
    expect(lossFell(run, 0.5), `losses ${run.records.map((r) => r.loss.toFixed(3)).join(' ')}`).toBe(true);
    const differences = relativeDistances(run.weights ?? [], nodeAfter, initial);
    const oneStep = relativeDistances(nodeBefore, nodeAfter, initial);
    console.log(`${backend} (${outcome.device}): ${msPerStep(run)}; page vs Node ${differences.map((d) => d.toExponential(2)).join(' ')}; one step ${oneStep.map((d) => d.toExponential(2)).join(' ')}`);
    for (const [i, difference] of differences.entries()) {
      expect(difference, `weight ${i}: page vs Node`).toBeLessThan(tolerance);
      expect(oneStep[i], `weight ${i}: one step of training`).toBeGreaterThan(tolerance);
    }
  }

  it("trains MKOR on webgl to Node's wasm weights within 2% of how far training moved them", async () => {
    await expectNodeWeights('webgl', /float32 textures/);
  });

  it("trains MKOR on webgpu (where Chromium offers it) to Node's wasm weights within 2% of how far training moved them", async ({ skip }) => {
    if (!backends.includes('webgpu')) skip('this Chromium offers no WebGPU adapter');
    // Until 2026-12-03 every MKOR step here was refused: tfjs-backend-webgpu's AddN silently
    // gives a wrong sum for more than 7 inputs, and the finite guard summed one probe per tensor
    // with tf.addN (now @mkor/core's addAll, groups of 4).
    await expectNodeWeights('webgpu', /WebGPU/);
  });

  it('trains all five side by side on wasm with @mkor/wasm-kernels: every loss falls, MKOR-H switches where asked, MKOR’s factors stay positive definite, nothing leaks; screenshot', async () => {
    // MKOR on tfjs's own kernels first, as many steps: the cost chart then shows both engines.
    await runInPage({ ...comparison, keepWeights: false, steps: 40, backend: 'wasm', wasmKernels: false, imageLimit: IMAGES });
    const outcome = await runInPage({
      backend: 'wasm',
      wasmKernels: true,
      model: 'MLP',
      spectrumEvery: 10,
      imageLimit: IMAGES,
      optimizers: ['MKOR', 'MKOR-H', 'KFAC', 'Eva', 'Adam'],
      learningRates: DEFAULT_LEARNING_RATES,
      switchChoice: { kind: 'at-step', step: 20 },
      steps: 40,
      batchSize: 128,
      hidden: 128,
      seed: 1,
    });
    expect(outcome.tensorsAfter, 'tensors left in the page').toBe(outcome.tensorsBefore);
    expect(outcome.device).toMatch(/@mkor\/wasm-kernels \(BatchMatMul, _FusedMatMul, Conv2DBackpropFilter, Conv2DBackpropInput; \d+ of \d+ fused kernels/);
    console.log(`wasm engine: ${outcome.device}`);
    expect(outcome.runs.map((run) => run.name)).toEqual(['MKOR', 'MKOR-H', 'KFAC', 'Eva', 'Adam']);
    const mkor = outcome.runs[0] as OptimizerRun;
    expect(mkor.spectra.map((reading) => reading.step)).toEqual([10, 20, 30, 40]);
    for (const reading of mkor.spectra) {
      // The second hidden layer: R⁻¹ over 128 inputs + the bias, L⁻¹ over 128 outputs, positive definite (Lemma 3.1).
      expect([reading.input.length, reading.output.length]).toEqual([129, 128]);
      expect([...reading.input, ...reading.output].every((value) => Number.isFinite(value) && value > 0), `step ${reading.step}`).toBe(true);
    }
    expect(await page.locator('#spectrum svg').count()).toBe(1);
    // The cost chart shows these runs next to MKOR's run on tfjs's own kernels.
    expect(await page.locator('#cost svg').textContent()).toContain('MKOR · tfjs');
    console.log(`wasm, side by side: ${outcome.runs.map(msPerStep).join('; ')}`);
    for (const run of outcome.runs) {
      expect(lossFell(run, 0.5), `${run.name}: losses ${run.records.map((r) => r.loss.toFixed(3)).join(' ')}`).toBe(true);
    }
    expect(outcome.runs.find((run) => run.name === 'MKOR-H')?.switchedAtStep).toBe(20);
    const secondOrder = outcome.runs.filter((run) => run.name !== 'Adam');
    for (const run of secondOrder) expect(run.records.some((record) => record.factorMs > 0 && record.preconditionMs > 0), `${run.name}: metrics`).toBe(true);
    await page.screenshot({ path: join(repoRoot, 'docs', 'images', 'playground.png'), fullPage: true });
  });

  it('trains the CNN on wasm with @mkor/wasm-kernels (MKOR and Adam: losses fall, factors positive definite, nothing leaks); without them MKOR cannot (no Conv2DBackpropFilter on wasm)', async () => {
    const cnn: PageRunRequest = { ...comparison, model: 'CNN', optimizers: ['MKOR', 'Adam'], keepWeights: false, steps: 30, spectrumEvery: 15, backend: 'wasm', imageLimit: IMAGES };
    const outcome = await runInPage({ ...cnn, wasmKernels: true });
    expect(outcome.tensorsAfter, 'tensors left in the page').toBe(outcome.tensorsBefore);
    console.log(`wasm, CNN: ${outcome.runs.map(msPerStep).join('; ')}`);
    for (const run of outcome.runs) {
      expect(lossFell(run, 0.7), `${run.name}: losses ${run.records.map((r) => r.loss.toFixed(3)).join(' ')}`).toBe(true);
    }
    const [reading] = (outcome.runs[0] as OptimizerRun).spectra;
    // The second convolution: 3·3·8 inputs + the bias, 16 output channels.
    expect([reading?.input.length, reading?.output.length]).toEqual([73, 16]);
    expect([...(reading?.input ?? []), ...(reading?.output ?? [])].every((value) => value > 0)).toBe(true);
    // tfjs-backend-wasm 4.22 as shipped has no Conv2DBackpropFilter kernel: the CNN cannot train on it.
    const shipped = await runInPage({ ...cnn, wasmKernels: false, steps: 1 }).then(
      () => 'trained',
      (error: unknown) => String(error),
    );
    expect(shipped).toMatch(/Conv2DBackpropFilter/);
  });

  it('on webgl with half-float textures (WEBGL_FORCE_F16_TEXTURES): MKOR refuses at construction saying why, leaving nothing behind; Adam trains', async () => {
    const halfFloat = await openPage('?tfjsflags=WEBGL_FORCE_F16_TEXTURES:true');
    try {
      const adam = await runInPage({ ...comparison, optimizers: ['Adam'], keepWeights: false, steps: 3, backend: 'webgl', imageLimit: IMAGES }, halfFloat);
      expect(adam.device).toContain('half-float textures');
      const refusal = await runInPage({ ...comparison, steps: 3, backend: 'webgl', imageLimit: IMAGES }, halfFloat).then(
        () => 'trained',
        (error: unknown) => String(error),
      );
      expect(refusal).toMatch(/MkorOptimizer: the webgl backend stores tensors in half-float \(16-bit\) textures here: WEBGL_FORCE_F16_TEXTURES is set/);
      expect(refusal).toMatch(/lose positive definiteness/);
      const after = await runInPage({ ...comparison, optimizers: ['Adam'], keepWeights: false, steps: 1, backend: 'webgl', imageLimit: IMAGES }, halfFloat);
      expect(after.tensorsBefore, 'tensors left by the refused run').toBe(adam.tensorsAfter);
    } finally {
      await halfFloat.close();
    }
  });

  it('on webgpu (where Chromium offers it): MKOR-H (stepped by minimizeAsync), Eva and Adam train beside MKOR, deciding on the device; MKOR-H switches where asked; nothing leaks', async ({ skip }) => {
    if (!backends.includes('webgpu')) skip('this Chromium offers no WebGPU adapter');
    const outcome = await runInPage({
      ...comparison,
      optimizers: ['MKOR', 'MKOR-H', 'Eva', 'Adam'],
      switchChoice: { kind: 'at-step', step: 10 },
      keepWeights: false,
      steps: 20,
      backend: 'webgpu',
      imageLimit: IMAGES,
    });
    expect(outcome.tensorsAfter, 'tensors left in the page').toBe(outcome.tensorsBefore);
    console.log(`webgpu, side by side: ${outcome.runs.map(msPerStep).join('; ')}`);
    for (const run of outcome.runs) {
      expect(lossFell(run, 0.7), `${run.name}: losses ${run.records.map((r) => r.loss.toFixed(3)).join(' ')}`).toBe(true);
    }
    expect(outcome.runs.find((run) => run.name === 'MKOR-H')?.switchedAtStep).toBe(10);
  });

  it('on webgpu (where Chromium offers it): reading back synchronously; the page refuses KFAC, which must, leaving nothing behind', async ({ skip }) => {
    if (!backends.includes('webgpu')) skip('this Chromium offers no WebGPU adapter');
    // A fresh tab: a device of its own, untouched by the training above.
    const fresh = await openPage();
    const once = await fresh
      .evaluate(() => (globalThis as unknown as { mkorPlayground: PlaygroundApi }).mkorPlayground.probeReadBacks('webgpu', 1))
      .finally(() => fresh.close());
    console.log(`webgpu read-backs, one dataSync: ${JSON.stringify(once)}`);
    // Measured: after an asynchronous read, dataSync of a small result works on a fresh device.
    // (Tried once on 2026-12-03, not kept as a test since it loses the device: a dataSync of a
    // computed result before any asynchronous read returned zeros, and the next read failed.)
    expect(once).toEqual({ synchronousReads: 1, asynchronous: 'values 2, 3, 4', synchronous: 'values 2, 3, 4', asynchronousAfter: 'values 2, 3, 4' });
    // KFAC inverts its factors from values read back (7 reads per inversion). Tried on 2026-12-03:
    // it lost the device in its first inversion. So the page refuses it on webgpu, saying why.
    const baseline = await runInPage({ ...comparison, optimizers: ['Adam'], keepWeights: false, steps: 1, backend: 'webgpu', imageLimit: IMAGES });
    const refusal = await runInPage({ ...comparison, optimizers: ['KFAC', 'Adam'], keepWeights: false, steps: 2, backend: 'webgpu', imageLimit: IMAGES }).then(
      () => 'trained',
      (error: unknown) => String(error),
    );
    expect(refusal).toMatch(/createOptimizer: KFAC is not offered on webgpu: it must read values back synchronously/);
    const adam = await runInPage({ ...comparison, optimizers: ['Adam'], keepWeights: false, steps: 1, backend: 'webgpu', imageLimit: IMAGES });
    expect(adam.tensorsBefore, 'tensors left by the refused run').toBe(baseline.tensorsAfter);
  });
});
