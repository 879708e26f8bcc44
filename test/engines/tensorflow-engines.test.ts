/**
 * MKOR on TensorFlow's native engines: when `@tensorflow/tfjs-node` (engine 'tensorflow') or
 * `@tensorflow/tfjs-node-gpu` ('tensorflow-gpu') is installed, MKOR's step tests against their
 * float64 mirrors run on it (vitest.engine.config.ts, in a child vitest) and must all pass. Neither
 * package can install on a machine without storage.googleapis.com (their install scripts download
 * libtensorflow), so each is skipped, saying so, where it is missing. The same run on the 'cpu'
 * engine, which every machine has, checks the harness itself.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

import { ENGINE_TEST_FILES } from './vitest.engine.config';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/** Whether a package resolves from the repository root (without loading it). */
function installed(name: string): boolean {
  try {
    createRequire(join(repoRoot, 'package.json')).resolve(name);
    return true;
  } catch {
    return false;
  }
}

/** The parts of vitest's JSON report read here. */
interface JsonReport {
  readonly numTotalTests: number;
  readonly numPassedTests: number;
  readonly testResults: readonly { readonly name: string; readonly assertionResults: readonly { readonly status: string; readonly fullName: string }[] }[];
}

/** Runs the engine tests on `engine` in a child vitest; returns its JSON report, or throws with the end of its output. */
async function runOnEngine(engine: string): Promise<JsonReport> {
  const folder = mkdtempSync(join(tmpdir(), `mkor-engine-${engine}-`));
  const reportFile = join(folder, 'report.json');
  try {
    const vitest = join(repoRoot, 'node_modules', 'vitest', 'vitest.mjs');
    const failure = await promisify(execFile)(process.execPath, [vitest, 'run', '--config', 'test/engines/vitest.engine.config.ts', '--reporter=json', `--outputFile=${reportFile}`], {
      cwd: repoRoot,
      env: { ...process.env, MKOR_ENGINE: engine },
      maxBuffer: 64 * 1024 * 1024,
    }).then(
      () => '',
      (error: { stdout?: string; stderr?: string }) => `${error.stdout ?? ''}${error.stderr ?? ''}`.slice(-4000),
    );
    if (failure !== '') throw new Error(`the run on '${engine}' failed:\n${failure}`);
    return JSON.parse(readFileSync(reportFile, 'utf8')) as JsonReport;
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}

const engines = [
  { engine: 'cpu', packageName: '@tensorflow/tfjs-backend-cpu' },
  { engine: 'tensorflow', packageName: '@tensorflow/tfjs-node' },
  { engine: 'tensorflow-gpu', packageName: '@tensorflow/tfjs-node-gpu' },
] as const;

for (const { engine, packageName } of engines) {
  if (!installed(packageName)) {
    console.warn(
      `test/engines: ${packageName} is not installed, so MKOR's steps on the '${engine}' engine are skipped. ` +
        `It installs with \`npm install ${packageName}\` where storage.googleapis.com is reachable (its install script downloads libtensorflow); see docs/packages/engine.md.`,
    );
  }
}

describe("MKOR's steps against float64 mirrors on other engines", () => {
  it.for(engines)('on the $engine engine ($packageName)', async ({ engine, packageName }, { skip }) => {
    if (!installed(packageName)) skip(`${packageName} is not installed (its install script downloads libtensorflow)`);
    const report = await runOnEngine(engine);
    expect(report.testResults.map((file) => file.name.slice(repoRoot.length)).sort()).toEqual([...ENGINE_TEST_FILES].sort());
    const notPassed = report.testResults.flatMap((file) => file.assertionResults.filter((test) => test.status !== 'passed').map((test) => `${test.fullName}: ${test.status}`));
    expect(notPassed).toEqual([]);
    expect(report.numPassedTests).toBe(report.numTotalTests);
    // Both files hold several tests (9 today); a run that collected none would pass the checks above.
    expect(report.numTotalTests).toBeGreaterThanOrEqual(8);
  });
});
