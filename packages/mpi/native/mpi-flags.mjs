/* global console, process */
// Prints the compiler or linker flags of the installed Open MPI for binding.gyp:
// `node native/mpi-flags.mjs cflags` or `node native/mpi-flags.mjs libs`.
// Tries `pkg-config mpi` (then `ompi`), then the `mpicc` wrapper's --showme.
import { execFileSync } from 'node:child_process';

const which = process.argv[2];
if (which !== 'cflags' && which !== 'libs') {
  console.error('usage: node native/mpi-flags.mjs cflags|libs');
  process.exit(2);
}

function run(command, args) {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

const flags =
  run('pkg-config', [`--${which}`, 'mpi']) ??
  run('pkg-config', [`--${which}`, 'ompi']) ??
  run('mpicc', [which === 'cflags' ? '--showme:compile' : '--showme:link']);

if (flags === undefined) {
  console.error(
    '@mkor/mpi: Open MPI development files not found (no `pkg-config mpi`, no `mpicc`). ' +
      'Install Open MPI first, e.g. `apt-get install openmpi-bin libopenmpi-dev` (Debian/Ubuntu), ' +
      '`dnf install openmpi-devel` (Fedora) or `brew install open-mpi` (macOS).',
  );
  process.exit(1);
}
console.log(flags);
