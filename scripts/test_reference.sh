#!/usr/bin/env bash
# The PyTorch checks of trained exact models: a venv in target/reference-venv with the pinned
# packages of tests/reference/requirements-ci.txt (torch, sentence-transformers), then pytest on
# tests/reference/test_exact_models.py, which trains the tiny fixtures with the release CLI and
# loads the results in sentence-transformers. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/reference-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/reference/requirements-ci.txt
cargo build --release --quiet --bin simattr --features cuda-emu
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$venv/bin/pytest" -q -p no:cacheprovider "$@" tests/reference/test_exact_models.py
