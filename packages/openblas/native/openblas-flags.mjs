/* global console, process */
// Prints the compiler or linker flags of the installed OpenBLAS for binding.gyp:
// `node openblas-flags.mjs cflags` or `node openblas-flags.mjs libs`. Tries `pkg-config openblas`,
// then a plain `-lopenblas` with the default include path. `node openblas-flags.mjs check` exits 1
// with one message when neither finds cblas.h and libopenblas.
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const which = process.argv[2];
if (which !== 'cflags' && which !== 'libs' && which !== 'check') {
  console.error('usage: node openblas-flags.mjs cflags|libs|check');
  process.exit(2);
}

function pkgConfig(flag) {
  try {
    return execFileSync('pkg-config', [flag, 'openblas'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

/** A compiler probe: can `cc` compile and link a program calling OpenBLAS with these flags? */
function links(cflags, libs) {
  const program = '#include <cblas.h>\nint main(void) { return openblas_get_num_threads() > 0 ? 0 : 1; }\n';
  const output = join(tmpdir(), `mkor-openblas-probe-${process.pid}`);
  try {
    execFileSync('cc', ['-x', 'c', '-', ...cflags.split(/\s+/).filter(Boolean), '-o', output, ...libs.split(/\s+/).filter(Boolean)], {
      input: program,
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    return existsSync(output);
  } catch {
    return false;
  } finally {
    rmSync(output, { force: true });
  }
}

const fromPkgConfig = { cflags: pkgConfig('--cflags'), libs: pkgConfig('--libs') };
const flags =
  fromPkgConfig.cflags !== undefined && fromPkgConfig.libs !== undefined ? fromPkgConfig : { cflags: '', libs: '-lopenblas' };

if (which === 'check') {
  if (!links(flags.cflags, flags.libs)) {
    console.error(
      '@mkor/openblas: OpenBLAS or a C compiler is missing (cannot compile and link against cblas.h and -lopenblas); ' +
        'the native gemm is not built and loadOpenBlasGemm() reports it unavailable. To build it install them ' +
        '(Debian/Ubuntu: `apt-get install libopenblas-dev build-essential`; Fedora: `dnf install openblas-devel gcc`) ' +
        'and run `npm run build:native -w @mkor/openblas`.',
    );
    process.exit(1);
  }
} else {
  console.log(flags[which]);
}
