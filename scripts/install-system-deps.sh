#!/usr/bin/env bash
# Installs the Debian packages the project needs, when missing: the Fashion-MNIST IDX files
# (real data for the examples, integration tests and benchmarks), Open MPI (the MPI transport) and
# OpenBLAS (the native gemm of @mkor/openblas) and Chromium (the playground's tests in a real browser,
# test/browser; driven by playwright-core, which downloads no browser of its own).
# Needs root (or sudo).
set -euo pipefail
packages=(dataset-fashion-mnist openmpi-bin libopenmpi-dev libopenblas-dev chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
