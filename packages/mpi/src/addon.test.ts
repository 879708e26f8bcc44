import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { MpiTransport, MpiUnavailableError } from './index';

// None of these reach MPI_Init: they fail while validating options or loading the addon.
describe('MpiTransport.create without a usable addon', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'mkor-mpi-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('says how to install Open MPI and build the addon when the addon is missing', async () => {
    const addonPath = join(scratch, 'missing', 'mkor_mpi.node');
    const attempt = MpiTransport.create({ addonPath });
    await expect(attempt).rejects.toBeInstanceOf(MpiUnavailableError);
    await expect(attempt).rejects.toThrow(
      /^MpiTransport\.create: the Open MPI transport is unavailable: the native addon was not built \(.*missing\/mkor_mpi\.node does not exist\)\. To use @mkor\/mpi: install Open MPI \(Debian\/Ubuntu: `apt-get install openmpi-bin libopenmpi-dev`.*`npm run build:native -w @mkor\/mpi`.*`mpirun -np <ranks> node <script>`/,
    );
  });

  it('says the addon could not be loaded when the file is not a native module', async () => {
    const addonPath = join(scratch, 'broken.node');
    writeFileSync(addonPath, 'not a shared object');
    const attempt = MpiTransport.create({ addonPath });
    await expect(attempt).rejects.toBeInstanceOf(MpiUnavailableError);
    await expect(attempt).rejects.toThrow(/the native addon .*broken\.node could not be loaded \(.*\)\. To use @mkor\/mpi: install Open MPI/);
  });

  it('rejects bad options before loading anything', async () => {
    await expect(MpiTransport.create({ timeoutMs: -1 })).rejects.toThrow(
      'MpiTransport.create: timeoutMs must be (0, ∞), got -1',
    );
    await expect(MpiTransport.create({ float16Wire: 'bfloat16' as 'half' })).rejects.toThrow(
      "MpiTransport.create: float16Wire must be one of 'convert', 'half', got bfloat16",
    );
    await expect(MpiTransport.create({ checkAgreement: 'yes' as unknown as boolean })).rejects.toThrow(
      'MpiTransport.create: checkAgreement must be a boolean, got yes',
    );
  });
});
