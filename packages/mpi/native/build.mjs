/* global console, process */
// Builds the native addon with node-gyp from native/binding.gyp (`npm run build:native`) and copies it
// to build/Release/mkor_mpi.node, where the package loads it. binding.gyp lives in native/, not the
// package root, so npm adds no implicit `node-gyp rebuild` install script for users without Open MPI.
// Uses the node-gyp that npm bundles (on PATH inside `npm run`, or found next to npm itself) and
// the headers of the running Node.js when they are installed beside it, so nothing is downloaded.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function findNodeGyp() {
  const candidates = [];
  if (process.env.npm_execpath) {
    candidates.push(join(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  }
  const prefix = resolve(dirname(process.execPath), '..');
  candidates.push(join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push(join(prefix, 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  return candidates.find((candidate) => existsSync(candidate));
}

const flagsCheck = spawnSync(process.execPath, [join(packageDir, 'native', 'mpi-flags.mjs'), 'cflags'], {
  stdio: ['ignore', 'ignore', 'inherit'],
});
if (flagsCheck.status !== 0) process.exit(1);

const nodeGyp = findNodeGyp();
if (nodeGyp === undefined) {
  console.error('@mkor/mpi: node-gyp not found; run this through npm (`npm run build:native -w @mkor/mpi`).');
  process.exit(1);
}
const args = [nodeGyp, 'rebuild'];
const localHeaders = resolve(dirname(process.execPath), '..');
if (existsSync(join(localHeaders, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${localHeaders}`);

const nativeDir = join(packageDir, 'native');
const build = spawnSync(process.execPath, args, { cwd: nativeDir, stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);
mkdirSync(join(packageDir, 'build', 'Release'), { recursive: true });
copyFileSync(join(nativeDir, 'build', 'Release', 'mkor_mpi.node'), join(packageDir, 'build', 'Release', 'mkor_mpi.node'));
