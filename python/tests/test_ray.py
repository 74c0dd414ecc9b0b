"""simattr.ray against the reference: `simattr batch` (the CLI) on the same pairs.

A local two-CPU Ray cluster explains 200 pairs (texts repeated across pairs, ids of every
kind, a blank line and bad lines among them) with two single-threaded actors; the records it
writes must be the CLI's lines, byte for byte, whatever order Ray wrote them in.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# Before Ray is imported: no usage reporting (nothing reaches for the network).
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
import ray  # noqa: E402
import ray.data  # noqa: E402

import simattr.ray as simattr_ray  # noqa: E402
from conftest import STEPS  # noqa: E402

# Ray Data's own DataContext warns about its deprecated fields when it copies a context.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

PAIRS = 200

SUBJECTS = ["the cat", "a dog", "my sister", "the teacher", "an old man", "the children"]
VERBS = ["paints", "sees", "carries", "finds"]
OBJECTS = ["a small boat", "the red door", "some bread"]


def sentences() -> list[str]:
    """24 distinct short sentences."""
    return [f"{s} {v} {o}." for s in SUBJECTS for v in VERBS for o in OBJECTS][::3]


def pair_lines() -> list[str]:
    """The pair file's lines: 200 pairs over 24 texts (each text in ≈ 17 pairs), ids numeric,
    string and absent, one blank line (so lines and pair numbers part), and three bad lines:
    an empty text, a missing `b`, an id already used."""
    texts = sentences()
    assert len(set(texts)) == len(texts) >= 20
    lines: list[str] = []
    for i in range(PAIRS):
        pair: dict[str, Any] = {"a": texts[(3 * i) % len(texts)], "b": texts[(5 * i + 7) % len(texts)]}
        if i % 3 == 0:
            pair["id"] = 1000 + i
        elif i % 3 == 1:
            pair["id"] = f"p{i}"
        if i == 57:
            pair["a"] = ""
        if i == 120:
            del pair["b"]
        if i == 151:
            pair["id"] = "p1"
        lines.append(json.dumps(pair))
        if i == 30:
            lines.append("")
    return lines


def run_cli(cli: Path, model: Path, pairs: Path, out: Path, cache: Path | None = None) -> list[str]:
    """`simattr batch` on `pairs`: its output lines (it exits 3: there are error records)."""
    command = [str(cli), "batch", str(pairs), "--out", str(out), "--model", str(model)]
    command += ["--steps", str(STEPS), "--threads", "1"]
    if cache is not None:
        command += ["--cache", str(cache)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr
    return out.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs, quiet, for this module."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        object_store_memory=200 * 1024 * 1024,
    )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, simattr_cli: Path, tiny_bert: Path) -> dict[str, Any]:
    """The pair file, the CLI's records for it and the CLI's disk cache."""
    root = tmp_path_factory.mktemp("ray-reference")
    pairs = root / "pairs.jsonl"
    pairs.write_text("\n".join(pair_lines()) + "\n", encoding="utf-8")
    cache = root / "cli-cache"
    lines = run_cli(simattr_cli, tiny_bert, pairs, root / "ref.jsonl", cache)
    assert len(lines) == PAIRS
    return {"pairs": pairs, "lines": lines, "cache": cache}


def explain(pairs: Any, out: Path, model: Path, **options: Any) -> dict[str, Any]:
    """explain_pairs with the settings of `run_cli`: blocks of 25 pairs over 2 actors."""
    return simattr_ray.explain_pairs(
        pairs, out, actors=2, threads_per_actor=1, batch_size=25, model=str(model),
        steps=STEPS, words=False, truncate=False, **options,
    )


def errors_in(lines: list[str]) -> int:
    return sum("error" in json.loads(line) for line in lines)


def check_actors(actors: list[str]) -> None:
    """Two distinct actor processes, neither of them this driver."""
    assert len(actors) == 2, actors
    assert all(actor.rsplit(":", 1)[1] != str(os.getpid()) for actor in actors), actors


def test_import_simattr_does_not_import_ray() -> None:
    code = "import sys, simattr; assert 'ray' not in sys.modules, 'import simattr imported ray'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_jsonl_records_are_the_cli_records(cluster, reference, tiny_bert, tmp_path) -> None:
    out, cache = tmp_path / "out", tmp_path / "ray-cache"
    summary = explain(reference["pairs"], out, tiny_bert, format="jsonl", cache_dir=str(cache), rows_per_file=60)

    # Every file's lines are records as they stand; together they are the CLI's lines.
    written: list[str] = []
    assert len(summary["files"]) >= 2  # 200 records, at least 60 a file
    for name in summary["files"]:
        assert name.endswith(".jsonl"), name
        text = Path(name).read_text(encoding="utf-8")
        assert text.endswith("\n")
        written.extend(text[:-1].split("\n"))
    assert sorted(written) == sorted(reference["lines"])
    # read_records gives them in the CLI's (input) order.
    assert simattr_ray.read_records(out) == reference["lines"]

    errors = errors_in(reference["lines"])
    assert errors == 3  # the empty text, the missing `b`, the repeated id
    assert (summary["pairs"], summary["explained"], summary["errors"]) == (PAIRS, PAIRS - errors, errors)
    assert summary["pairs_per_s"] > 0
    check_actors(summary["actors"])
    # cache_dir reached the actors, keyed as the CLI keys its own: the same entries.
    assert sorted(os.listdir(cache)) == sorted(os.listdir(reference["cache"]))


def test_parquet_columns_and_records(cluster, reference, tiny_bert, tmp_path) -> None:
    out = tmp_path / "out"
    # Read from the CLI's warm disk cache: the same records again.
    summary = explain(reference["pairs"], out, tiny_bert, format="parquet", cache_dir=str(reference["cache"]))
    assert summary["files"] and all(name.endswith(".parquet") for name in summary["files"])

    table = pq.read_table(str(out))
    assert table.column_names == ["id", "line", "record", "error", "score", "actor"]
    assert table.num_rows == PAIRS
    rows = sorted(table.to_pylist(), key=lambda row: row["line"])
    assert [row["record"] for row in rows] == reference["lines"]
    for row in rows:
        record = json.loads(row["record"])
        assert (row["id"], row["line"]) == (record["id"], record["line"])
        assert row["error"] == record.get("error")
        assert row["score"] == record.get("score")
        assert (row["score"] is None) == (row["error"] is not None)
    check_actors(sorted({row["actor"] for row in rows}))
    assert sorted({row["actor"] for row in rows}) == summary["actors"]


def test_dataset_input_is_numbered_like_a_pair_file(cluster, simattr_cli, tiny_bert, tmp_path) -> None:
    """A Dataset without `line`: rows numbered from 1 in order, ids defaulting to it, a
    repeated id and an empty text as error records, as the CLI reads the same rows from a
    file without blank lines."""
    texts = sentences()
    rows = [{"a": texts[i % 24], "b": texts[(7 * i + 2) % 24], "id": f"r{i}" if i % 4 == 0 else None} for i in range(40)]
    rows[9]["b"] = ""
    rows[21]["id"] = "r0"
    pairs = tmp_path / "rows.jsonl"
    pairs.write_text("".join(json.dumps({k: v for k, v in row.items() if v is not None}) + "\n" for row in rows))
    expected = run_cli(simattr_cli, tiny_bert, pairs, tmp_path / "ref.jsonl")
    assert errors_in(expected) == 2

    summary = explain(ray.data.from_items(rows, override_num_blocks=3), tmp_path / "out", tiny_bert, format="jsonl")
    assert simattr_ray.read_records(tmp_path / "out") == expected
    assert (summary["pairs"], summary["errors"]) == (40, 2)


def test_refuses_a_directory_with_files(tiny_bert, tmp_path) -> None:
    (tmp_path / "old.jsonl").write_text("{}\n")
    with pytest.raises(FileExistsError):
        simattr_ray.explain_pairs(tmp_path / "missing.jsonl", tmp_path, model=str(tiny_bert))


def test_rejects_unknown_session_options(cluster) -> None:
    with pytest.raises(TypeError, match="stepz"):
        simattr_ray.explain_dataset(ray.data.from_items([{"line": 1, "a": "x", "b": "y"}]), stepz=3)
    with pytest.raises(TypeError, match="threads_per_actor"):
        simattr_ray.explain_dataset(ray.data.from_items([{"line": 1, "a": "x", "b": "y"}]), threads=3)
