/* global console, process */
// Builds the native gemm (native/build/Release/mkor_openblas.node) with the node-gyp that npm puts
// on PATH inside `npm run build:native` (with npm's nodedir config, so nothing is downloaded where
// it points at installed headers). binding.gyp lives in native/, not at the package root, so npm
// never adds an implicit `node-gyp rebuild` install script. When OpenBLAS, a C compiler or node-gyp
// is missing it prints one message and exits 0: the package then works without it
// (loadOpenBlasGemm() says why); a compile failure with all of them present exits non-zero.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const nativeDir = dirname(fileURLToPath(import.meta.url));

const check = spawnSync(process.execPath, [join(nativeDir, 'openblas-flags.mjs'), 'check'], { stdio: ['ignore', 'ignore', 'inherit'] });
if (check.status !== 0) process.exit(0);

const build = spawnSync('node-gyp', ['rebuild'], { cwd: nativeDir, stdio: 'inherit' });
if (build.error !== undefined) {
  console.error(
    `@mkor/openblas: node-gyp could not be started (${build.error.message}), the native gemm is not built; ` +
      'run this through npm: `npm run build:native -w @mkor/openblas`.',
  );
  process.exit(0);
}
if (build.status !== 0) console.error('@mkor/openblas: node-gyp failed (see above); the native gemm is not built.');
process.exit(build.status ?? 1);
