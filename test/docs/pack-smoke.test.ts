/**
 * The packages as users get them: scripts/pack-smoke.sh packs every publishable package, checks
 * that none has an install script and each ships its LICENSE, installs the tarballs with
 * @tensorflow/tfjs into a fresh app outside the repository and imports each (ESM and CJS).
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

it('every publishable package packs, installs without install scripts and imports', () => {
  const script = fileURLToPath(new URL('../../scripts/pack-smoke.sh', import.meta.url));
  const output = execFileSync('bash', [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  expect(output).toMatch(/pack-smoke: \d+ packages packed, installed and imported/);
}, 900_000);
