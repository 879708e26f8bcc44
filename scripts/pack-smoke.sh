#!/usr/bin/env bash
# Packs every publishable @mkor package as npm would publish it, installs the tarballs with
# @tensorflow/tfjs into a fresh app outside the repository, and imports each package there (ESM and
# CJS). Fails if a packed package.json has an install, preinstall or postinstall script.
# Needs the packages built (npx turbo run build) and the npm registry (or a warm npm cache).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
app="$(mktemp -d)"
trap 'rm -rf "$app"' EXIT
mkdir "$app/tarballs"
names=()
for dir in "$repo"/packages/*/; do
  if node -e "process.exit(require('${dir}package.json').private ? 0 : 1)"; then continue; fi
  names+=("$(node -p "require('${dir}package.json').name")")
  (cd "$dir" && npm pack --silent --pack-destination "$app/tarballs" >/dev/null)
done
for tarball in "$app"/tarballs/*.tgz; do
  scripts="$(tar -xzOf "$tarball" package/package.json | node -e "
    const p = JSON.parse(require('fs').readFileSync(0, 'utf8'));
    console.log(['preinstall', 'install', 'postinstall'].filter((s) => p.scripts?.[s]).join(' '))")"
  if [[ -n "$scripts" ]]; then echo "$(basename "$tarball") has install scripts: $scripts" >&2; exit 1; fi
  contents="$(tar -tzf "$tarball")"
  grep -qx 'package/LICENSE' <<<"$contents" || { echo "$(basename "$tarball") has no LICENSE" >&2; exit 1; }
done
cd "$app"
npm init -y >/dev/null
npm install --no-audit --no-fund --silent @tensorflow/tfjs@^4.22.0 "$app"/tarballs/*.tgz
list="$(printf "'%s'," "${names[@]}")"
cat > smoke.mjs <<JS
import '@tensorflow/tfjs';
for (const name of [${list}]) {
  const module = await import(name);
  if (Object.keys(module).length === 0) throw new Error(name + ' exports nothing');
}
console.log('esm ok');
JS
cat > smoke.cjs <<JS
require('@tensorflow/tfjs');
for (const name of [${list}]) {
  if (Object.keys(require(name)).length === 0) throw new Error(name + ' exports nothing');
}
console.log('cjs ok');
JS
node smoke.mjs
node smoke.cjs
echo "pack-smoke: ${#names[@]} packages packed, installed and imported"
