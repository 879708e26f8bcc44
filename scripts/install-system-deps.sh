#!/usr/bin/env bash
# Installs the Debian packages the project needs, when missing: the Fashion-MNIST IDX files
# (real data for the examples, integration tests and benchmarks), Open MPI (the MPI transport) and
# OpenBLAS (the native gemm of @mkor/openblas), Chromium (the playground's tests in a real browser,
# test/browser; driven by playwright-core, which downloads no browser of its own), and what gpu.js's
# optional headless-gl (`gl`) compiles against and runs under: libxi-dev, libglu1-mesa-dev,
# libglew-dev, pkg-config, and xvfb (its X display; `xvfb-run`). Run it before `npm ci`, so that
# `gl` builds; without them `npm ci` still succeeds and @mkor/gpujs-kernels skips its headless-gl tests.
# Needs root (or sudo).
set -euo pipefail
packages=(dataset-fashion-mnist openmpi-bin libopenmpi-dev libopenblas-dev chromium libxi-dev libglu1-mesa-dev libglew-dev pkg-config xvfb xauth)
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
