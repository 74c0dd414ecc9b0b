"""Shared fixtures: the repository, the tiny BERT fixture model, the release CLI, Chromium, and a
session-scoped explainer and native session on the tiny model.

Nothing here skips: a missing CLI build or browser fails the tests that need it, with a message
saying how to get it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest

import simattr
from simattr import _native

#: Steps of the tiny model's explanations: enough for a meaningful path, quick on one thread.
STEPS = 20


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository's root (python/tests/../..)."""
    root = Path(__file__).resolve().parent.parent.parent
    assert (root / "Cargo.toml").is_file(), f"{root} is not the simattr repository"
    return root


@pytest.fixture(scope="session")
def tiny_bert(repo: Path) -> Path:
    """The tiny BERT sentence-transformers model of the Rust tests (tests/fixtures/tiny-bert)."""
    path = repo / "tests" / "fixtures" / "tiny-bert"
    assert (path / "config.json").is_file(), f"the fixture model is missing: {path}"
    return path


@pytest.fixture(scope="session")
def simattr_cli(repo: Path) -> Path:
    """The release build of the simattr command line (target/release/simattr)."""
    path = repo / "target" / "release" / "simattr"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `cargo build --release` in {repo} first")
    return path


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Headless Chromium (`chromium` or `chromium-browser` on PATH, or /usr/bin/chromium)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return Path(found)
    if Path("/usr/bin/chromium").is_file():
        return Path("/usr/bin/chromium")
    pytest.fail(
        "the notebook tests render the report in Chromium, and neither `chromium` nor "
        "`chromium-browser` is on PATH: install it (Debian/Ubuntu: `apt-get install -y chromium`)"
    )


@pytest.fixture(scope="session")
def explainer(tiny_bert: Path) -> Iterator["simattr.Explainer"]:
    """An Explainer on the tiny model, one thread, a few steps."""
    yield simattr.Explainer(model=str(tiny_bert), steps=STEPS, threads=1)


@pytest.fixture(scope="session")
def session(tiny_bert: Path) -> _native.Session:
    """The native session on the tiny model, with the word view, as the explainer's."""
    return _native.Session(str(tiny_bert), steps=STEPS, threads=1)


@pytest.fixture(scope="session")
def plain_session(tiny_bert: Path) -> _native.Session:
    """The native session on the tiny model without the word view."""
    return _native.Session(str(tiny_bert), steps=STEPS, threads=1, words=False)
