#!/usr/bin/env bash
# Installs the parts of the CUDA toolkit the kernels' checks need, from NVIDIA's PyPI wheels,
# into the cache (no CUDA installation, no GPU): NVRTC (compiles kernels/*.cu to PTX), the
# runtime headers (cuda_fp16.h, cuda_bf16.h, which NVRTC does not carry) and ptxas (resource
# reports). Prints the folder. Idempotent; safe to run concurrently (a lock).
#   folder: $SIMATTR_CUDA_TOOLS, else $SIMATTR_CACHE/cuda-tools (cache as scripts/fetch_model.sh)
#   python: $PYTHON (default python3), which needs pip
set -euo pipefail

# Pinned: CUDA 12.9, what cudarc's cuda-12090 bindings expect (about 135 MB of wheels).
wheels=(nvidia-cuda-nvrtc-cu12==12.9.86 nvidia-cuda-runtime-cu12==12.9.79 nvidia-cuda-nvcc-cu12==12.9.86)

cache="${SIMATTR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/simattr}"
target="${SIMATTR_CUDA_TOOLS:-$cache/cuda-tools}"
python="${PYTHON:-python3}"
stamp="$target/.installed"

mkdir -p "$(dirname "$target")"
exec 9>"$target.lock"
flock 9

if [[ -f "$stamp" && "$(cat "$stamp")" == "${wheels[*]}" ]]; then
  echo "$target"
  exit 0
fi

echo "fetching the CUDA compiler tools from PyPI (${wheels[*]})" >&2
staging="$(mktemp -d "$target.partial.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
"$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$staging" "${wheels[@]}" >&2
for tool in nvidia/cuda_nvrtc/lib/libnvrtc.so.12 nvidia/cuda_runtime/include/cuda_fp16.h nvidia/cuda_nvcc/bin/ptxas; do
  if [[ ! -e "$staging/$tool" ]]; then
    echo "error: the wheels did not provide $tool" >&2
    exit 1
  fi
done
chmod +x "$staging/nvidia/cuda_nvcc/bin/ptxas"
echo "${wheels[*]}" > "$staging/.installed"
rm -rf "$target"
mv "$staging" "$target"
trap - EXIT
echo "$target"
