#!/usr/bin/env bash
# The Python package's tests: a venv in target/python-venv (made once, its packages pinned in
# python/requirements-test.txt; no torch), `pip install ./python` into it (which reuses the
# workspace's release build folder), then pytest. Both the module and the CLI are built with
# the `cuda-emu` feature, as scripts/test.sh builds them: the tests compare `backend="cuda-emu"`
# with the CLI's `--backend cuda-emu`. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/python-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r python/requirements-test.txt
MATURIN_PEP517_ARGS="--features cuda-emu" \
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps ./python
cargo build --release --quiet --bin simattr --features cuda-emu
# Ray: no usage reporting, no dashboard (nothing outside this machine is reachable anyway).
export RAY_USAGE_STATS_ENABLED=0
# From the repository's root, so that `import simattr` finds the installed package, not the
# sources in python/simattr (which lack the compiled module).
exec "$venv/bin/pytest" -q "$@" python/tests
