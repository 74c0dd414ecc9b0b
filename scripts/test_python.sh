#!/usr/bin/env bash
# The Python package's tests: a venv in target/python-venv (made once, its packages pinned in
# python/requirements-test.txt; no torch), `pip install ./python` into it (which reuses the
# workspace's release build folder), then pytest. Needs the release CLI (`cargo build
# --release`; scripts/test.sh has built it). Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/python-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r python/requirements-test.txt
"$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps ./python
cargo build --release --quiet --bin simattr
# Ray: no usage reporting, no dashboard (nothing outside this machine is reachable anyway).
export RAY_USAGE_STATS_ENABLED=0
# From the repository's root, so that `import simattr` finds the installed package, not the
# sources in python/simattr (which lack the compiled module).
exec "$venv/bin/pytest" -q "$@" python/tests
