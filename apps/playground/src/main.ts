/**
 * The page: reads the form, loads the data, trains with {@link trainSideBySide} on the chosen
 * backend and draws the charts as the steps come in. `window.mkorPlayground` exposes the same run
 * to scripts (the Chromium tests drive the page through it).
 */
import * as tf from '@tensorflow/tfjs';

import { BACKEND_NAMES, type BackendName, type PageRunOutcome, type PageRunRequest, type PlaygroundApi } from './api';
import { availableBackends, describeDevice, probeReadBacks, useBackend, webgpuDeviceLoss } from './backends';
import { fetchTrainingImages, readPickedImages } from './data';
import { type ModelName, describeModel } from './model';
import { DEFAULT_LEARNING_RATES, OPTIMIZER_NAMES, type OptimizerName, type SwitchChoice } from './optimizers';
import { type EngineRuns, costChart, lossChart, spectrumChart } from './plots';
import { type LabelledImages, type OptimizerRun, type TrainingSettings, trainSideBySide } from './train';

declare global {
  interface Window {
    mkorPlayground: PlaygroundApi;
  }
}

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (found === null) throw new Error(`playground: the page has no #${id}`);
  return found as T;
}

const status = element<HTMLSpanElement>('status');
const backendSelect = element<HTMLSelectElement>('backend');
const numberField = (id: string) => Number(element<HTMLInputElement>(id).value);

function setStatus(state: 'idle' | 'loading' | 'training' | 'done' | 'error', text: string): void {
  status.dataset.state = state;
  status.textContent = text;
}

for (const name of OPTIMIZER_NAMES) {
  const label = document.createElement('label');
  label.innerHTML = `<input type="checkbox" checked data-optimizer="${name}" /> ${name} <input type="number" step="any" min="0" value="${DEFAULT_LEARNING_RATES[name]}" data-learning-rate="${name}" />`;
  element('optimizers').append(label);
}

/** The settings the form shows. */
function formSettings(): TrainingSettings & { backend: BackendName; wasmKernels: boolean; imageLimit: number } {
  const optimizers = OPTIMIZER_NAMES.filter((name) => document.querySelector<HTMLInputElement>(`[data-optimizer="${name}"]`)?.checked);
  const learningRates = Object.fromEntries(
    OPTIMIZER_NAMES.map((name) => [name, Number(document.querySelector<HTMLInputElement>(`[data-learning-rate="${name}"]`)?.value)]),
  ) as Record<OptimizerName, number>;
  const switchChoice: SwitchChoice =
    element<HTMLSelectElement>('switch-kind').value === 'at-step' ? { kind: 'at-step', step: numberField('switch-step') } : { kind: 'loss-rate' };
  return {
    backend: backendSelect.value as BackendName,
    wasmKernels: element<HTMLInputElement>('wasm-kernels').checked,
    imageLimit: numberField('image-limit'),
    model: element<HTMLSelectElement>('model').value as ModelName,
    optimizers,
    learningRates,
    switchChoice,
    steps: numberField('steps'),
    batchSize: numberField('batch-size'),
    hidden: numberField('hidden'),
    seed: numberField('seed'),
    spectrumEvery: Math.max(1, Math.round(numberField('steps') / 10)),
  };
}

/** Shows a request's settings in the form, so that the page says what it ran. */
function showSettings(settings: ReturnType<typeof formSettings>): void {
  backendSelect.value = settings.backend;
  element<HTMLInputElement>('wasm-kernels').checked = settings.wasmKernels;
  element<HTMLInputElement>('image-limit').value = String(settings.imageLimit);
  element<HTMLSelectElement>('model').value = settings.model;
  element<HTMLInputElement>('steps').value = String(settings.steps);
  element<HTMLInputElement>('batch-size').value = String(settings.batchSize);
  element<HTMLInputElement>('hidden').value = String(settings.hidden);
  element<HTMLInputElement>('seed').value = String(settings.seed);
  element('model-echo').textContent = describeModel(settings);
  element<HTMLInputElement>('wasm-kernels').disabled = settings.backend !== 'wasm';
  element<HTMLSelectElement>('switch-kind').value = settings.switchChoice.kind;
  if (settings.switchChoice.kind === 'at-step') element<HTMLInputElement>('switch-step').value = String(settings.switchChoice.step);
  for (const name of OPTIMIZER_NAMES) {
    const box = document.querySelector<HTMLInputElement>(`[data-optimizer="${name}"]`);
    const rate = document.querySelector<HTMLInputElement>(`[data-learning-rate="${name}"]`);
    if (box) box.checked = settings.optimizers.includes(name);
    if (rate) rate.value = String(settings.learningRates[name]);
  }
}

let cachedData: { key: string; images: LabelledImages } | undefined;

/** The training images: the picked files when there are any, else the URL's; reused while the source and limit stay. */
async function trainingImages(limit: number): Promise<LabelledImages> {
  const files = [...(element<HTMLInputElement>('data-files').files ?? [])];
  const url = element<HTMLInputElement>('data-url').value;
  const key = `${files.length > 0 ? files.map((file) => `${file.name}:${file.size}:${file.lastModified}`).join('|') : url}#${limit}`;
  if (cachedData?.key !== key) {
    setStatus('loading', `Loading ${limit} images from ${files.length > 0 ? 'the picked files' : url}…`);
    cachedData = { key, images: files.length > 0 ? await readPickedImages(files, limit) : await fetchTrainingImages(url, limit) };
  }
  return cachedData.images;
}

/** The latest runs on each engine, by backend, engine and model, for the cost chart's comparison. */
const runsByEngine = new Map<string, EngineRuns & { backend: BackendName; model: ModelName }>();

/** Draws the charts and the table of `runs` (trained with `engine`), the cost chart next to earlier runs of the same backend and model on other engines. */
function draw(runs: readonly OptimizerRun[], current: { backend: BackendName; model: ModelName; engine: string }): void {
  runsByEngine.set(`${current.backend}|${current.engine}|${current.model}`, { ...current, runs });
  const comparable = [...runsByEngine.values()].filter((group) => group.backend === current.backend && group.model === current.model);
  element('loss-by-step').innerHTML = lossChart(runs, 'step');
  element('loss-by-seconds').innerHTML = lossChart(runs, 'seconds');
  element('cost').innerHTML = costChart(comparable);
  element('spectrum').innerHTML = spectrumChart(runs);
  const mean = (run: OptimizerRun, part: (r: OptimizerRun['records'][number]) => number) => run.records.reduce((s, r) => s + part(r), 0) / Math.max(1, run.records.length);
  element('summary').innerHTML = [
    '<tr><th>optimizer</th><th>steps</th><th>last loss</th><th>ms / step</th><th>factor ms</th><th>precondition ms</th><th>seconds</th><th>MKOR-H switch</th></tr>',
    ...runs.map((run) => {
      const last = run.records.at(-1);
      return `<tr><td>${run.name}</td><td>${run.records.length}</td><td>${last?.loss.toFixed(4) ?? ''}</td><td>${mean(run, (r) => r.stepMs).toFixed(1)}</td>` +
        `<td>${mean(run, (r) => r.factorMs).toFixed(1)}</td><td>${mean(run, (r) => r.preconditionMs).toFixed(1)}</td><td>${last?.seconds.toFixed(2) ?? ''}</td>` +
        `<td>${run.name === 'MKOR-H' ? (run.switchedAtStep >= 0 ? `step ${run.switchedAtStep}` : 'not yet') : ''}</td></tr>`;
    }),
  ].join('');
}

let running = false;

/** Runs `request` (the form filling what it leaves out), drawing as it goes. */
async function run(request: PageRunRequest = {}): Promise<PageRunOutcome> {
  if (running) throw new Error('mkorPlayground.run: a run is in progress; wait for it to finish');
  running = true;
  try {
    const settings = { ...formSettings(), ...request };
    showSettings(settings);
    const images = await trainingImages(settings.imageLimit);
    await useBackend(settings.backend, settings.wasmKernels);
    const device = await describeDevice(settings.backend);
    // Short, for the cost chart's labels: 'tfjs' is tfjs-backend-wasm's own kernels, 'mkor' with @mkor/wasm-kernels.
    const engine = settings.backend === 'wasm' ? (settings.wasmKernels ? 'mkor' : 'tfjs') : settings.backend;
    element('device').textContent = device;
    const current = { backend: settings.backend, model: settings.model, engine };
    const tensorsBefore = tf.memory().numTensors;
    setStatus('training', `Training the ${settings.model} on ${settings.backend}…`);
    const runs = await trainSideBySide(images, settings, async (progress) => {
      draw(progress, current);
      setStatus('training', `Training the ${settings.model} on ${settings.backend}: step ${progress[0]?.records.length ?? 0} of ${settings.steps}`);
      // Let the browser paint the charts between steps.
      await new Promise((resolve) => requestAnimationFrame(resolve));
    });
    const tensorsAfter = tf.memory().numTensors;
    draw(runs, current);
    setStatus('done', `Done: ${settings.steps} steps of the ${settings.model} on ${settings.backend}.`);
    return { backend: settings.backend, device, runs, tensorsBefore, tensorsAfter };
  } catch (error) {
    const loss = await webgpuDeviceLoss();
    const message = `${error instanceof Error ? error.message : String(error)}${loss === undefined ? '' : ` (${loss})`}`;
    setStatus('error', message);
    console.error(error);
    throw loss === undefined ? error : new Error(message, { cause: error });
  } finally {
    running = false;
  }
}

window.mkorPlayground = { availableBackends, run, probeReadBacks };

const available = await availableBackends();
backendSelect.innerHTML = BACKEND_NAMES.map(
  (name) => `<option value="${name}"${available.includes(name) ? '' : ' disabled'}>${name}${available.includes(name) ? '' : ' (not in this browser)'}</option>`,
).join('');
backendSelect.value = available[0] ?? 'cpu';
// The engine choice applies to wasm only.
const showEngineChoice = () => void (element<HTMLInputElement>('wasm-kernels').disabled = backendSelect.value !== 'wasm');
backendSelect.addEventListener('change', showEngineChoice);
showEngineChoice();
element<HTMLFormElement>('settings').addEventListener('submit', (event) => {
  event.preventDefault();
  // run() shows the error in the status line and the console.
  run().catch(() => undefined);
});
document.body.dataset.ready = 'true';
