"""Distributed explanations on Ray Data: ``simattr batch`` spread over many actors.

Import it only where Ray is wanted (``pip install "simattr[ray]"``); ``import simattr`` never
imports Ray.

Each actor holds one :class:`simattr._native.Session` (the model loaded once per actor) and
turns the blocks it is given into the JSON lines ``simattr batch`` writes for them, byte for
byte: the same records, ids, line numbers and error records, in another order. A session
keeps every distinct text's attribution for as long as the actor lives, so a text repeated
across the blocks one actor explains is computed once by that actor; actors do not share
their memory caches, but a ``cache_dir`` on storage every actor reaches is shared by all.

    import ray
    import simattr.ray

    ray.init(address="auto")
    summary = simattr.ray.explain_pairs("pairs.jsonl", "explained/", actors=8, steps=50,
                                        words=False, truncate=False)
    records = simattr.ray.read_records("explained/")   # sorted by line

The output columns of the map step (:func:`explain_dataset`) are ``id`` (str), ``line``
(int), ``record`` (the JSON line, str), ``error`` (str or None), ``score`` (float or None)
and ``actor`` (``host:pid`` of the actor that explained the pair).
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import TYPE_CHECKING, Any, Iterable, Sequence, Union

import pyarrow as pa
import ray
import ray.data
from ray.data.block import Block, BlockAccessor
from ray.data.datasource import BlockBasedFileDatasink

if TYPE_CHECKING:
    from ray.data._internal.execution.interfaces import TaskContext
    from ray.data.datasource.datasink import WriteResult

__all__ = ["explain_pairs", "explain_dataset", "pairs_dataset", "read_records", "OUTPUT_SCHEMA"]

#: One pair as ``simattr._native`` takes it: ``(line, id, a, b, error)``.
Item = tuple[int, str, Union[str, None], Union[str, None], Union[str, None]]

#: The canonical input of the map step: one row per pair, as ``simattr batch`` reads it.
PAIRS_SCHEMA = pa.schema(
    [("line", pa.int64()), ("id", pa.string()), ("a", pa.string()), ("b", pa.string()), ("error", pa.string())]
)

#: The columns :func:`explain_dataset` gives and ``format="parquet"`` writes.
OUTPUT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("line", pa.int64()),
        ("record", pa.string()),
        ("error", pa.string()),
        ("score", pa.float64()),
        ("actor", pa.string()),
    ]
)

#: ``Session`` keywords that may pass through ``**session_options`` (``threads`` is set from
#: ``threads_per_actor``).
SESSION_OPTIONS = frozenset(
    {
        "backend", "device", "precision", "primal", "max_memory", "layer", "steps", "rule",
        "method", "similarity", "mode", "words", "word_merge", "truncate", "cache_dir",
        "cache_memory",
    }
)

#: How long the map step waits for every actor to be up (model loaded) before it hands out
#: blocks, so that the work is spread over all of them from the start.
ACTOR_START_TIMEOUT_S = 600

FORMATS = ("jsonl", "parquet")


# ---------------------------------------------------------------------------------------
# Input: pairs as simattr batch reads them
# ---------------------------------------------------------------------------------------


def pairs_dataset(pairs: str | os.PathLike[str] | ray.data.Dataset, *, batch_size: int = 64) -> ray.data.Dataset:
    """The pairs as a Dataset of ``PAIRS_SCHEMA`` rows, in blocks of ``batch_size`` pairs.

    ``pairs`` is a pair file (``.jsonl``, ``.ndjson``, ``.csv``, ``.tsv``), read on the driver
    by ``simattr._native.read_pairs`` exactly as ``simattr batch`` reads it, or a Dataset with
    string columns ``a`` and ``b`` and optionally ``id`` and ``line``, collected on the driver
    (only these columns) in its row order: a missing ``line`` is the 1-based row number, a
    missing (or null) ``id`` is the line as a string, a null ``a`` or ``b`` makes an error
    record, and an id seen before makes the later rows error records, as in a pair file.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    return _blocks(_items(pairs), batch_size)


def _items(pairs: str | os.PathLike[str] | ray.data.Dataset) -> list[Item]:
    if isinstance(pairs, ray.data.Dataset):
        return _items_of_dataset(pairs)
    return _read_items(os.fspath(pairs))


def _read_items(path: str) -> list[Item]:
    from simattr import _native

    return [tuple(item) for item in _native.read_pairs(path)]


def _items_of_dataset(ds: ray.data.Dataset) -> list[Item]:
    """The rows of a user's Dataset as items, numbered and checked as ``simattr batch`` does."""
    columns = ds.columns()
    for needed in ("a", "b"):
        if needed not in columns:
            raise ValueError(f"the pairs Dataset has no `{needed}` column (it has: {', '.join(columns)})")
    # Derived Datasets share their root's context: set the row order for this pass only.
    options = ds.context.execution_options
    preserve_order, options.preserve_order = options.preserve_order, True
    rows: list[dict[str, Any]] = []
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            rows.extend(batch.select([c for c in ("line", "id", "a", "b") if c in batch.column_names]).to_pylist())
    finally:
        options.preserve_order = preserve_order
    return _unique_ids([_item_of_row(number, row) for number, row in enumerate(rows, start=1)])


def _item_of_row(number: int, row: dict[str, Any]) -> Item:
    line = int(row["line"]) if row.get("line") is not None else number
    raw_id = row.get("id")
    pair_id = str(line) if raw_id is None else str(raw_id)
    for field in ("a", "b"):
        value = row.get(field)
        if value is None:
            return (line, pair_id, None, None, f"line {line}: field `{field}` is missing")
        if not isinstance(value, str):
            return (line, pair_id, None, None, f"line {line}: field `{field}` must be a string, not {value!r}")
    return (line, pair_id, row["a"], row["b"], None)


def _unique_ids(items: list[Item]) -> list[Item]:
    """A repeated id makes its later items bad, naming the first line (as ``simattr batch``)."""
    first_line: dict[str, int] = {}
    checked: list[Item] = []
    for item in items:
        line, pair_id = item[0], item[1]
        if pair_id in first_line:
            checked.append((line, pair_id, None, None, f"line {line}: id `{pair_id}` repeats line {first_line[pair_id]}'s"))
        else:
            first_line[pair_id] = line
            checked.append(item)
    return checked


def _blocks(items: Sequence[Item], batch_size: int) -> ray.data.Dataset:
    """One Dataset block per ``batch_size`` items, so that the blocks spread over the actors."""
    table = pa.Table.from_pylist(
        [{"line": line, "id": pair_id, "a": a, "b": b, "error": error} for line, pair_id, a, b, error in items],
        schema=PAIRS_SCHEMA,
    )
    slices = [table.slice(start, batch_size) for start in range(0, table.num_rows, batch_size)]
    return ray.data.from_arrow(slices or [table])


# ---------------------------------------------------------------------------------------
# The map step: one Session per actor
# ---------------------------------------------------------------------------------------


class _Explainer:
    """A Ray Data callable class: one model per actor, each block through ``batch_records``."""

    def __init__(self, model: str | None, session_options: dict[str, Any]) -> None:
        from simattr import _native

        self._session = _native.Session(model, **session_options)
        self._actor = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: pa.Table) -> pa.Table:
        items = _items_of_batch(batch)
        records = self._session.batch_records(items)
        return _output_table(items, records, self._actor)


def _items_of_batch(batch: pa.Table) -> list[Item]:
    """The ``(line, id, a, b, error)`` items of a block (``line`` required, the rest optional)."""
    n = batch.num_rows
    if "line" not in batch.column_names:
        raise ValueError("explain_dataset needs a `line` column (int); pairs_dataset() numbers the rows")

    def column(name: str) -> list[Any]:
        return batch.column(name).to_pylist() if name in batch.column_names else [None] * n

    lines, ids, a, b, errors = (column(name) for name in ("line", "id", "a", "b", "error"))
    return [
        (int(lines[i]), str(lines[i]) if ids[i] is None else str(ids[i]), a[i], b[i], errors[i])
        for i in range(n)
    ]


def _output_table(items: Sequence[Item], records: Sequence[str], actor: str) -> pa.Table:
    """The output columns of a block: the records with their id, line, error and score."""
    parsed = [json.loads(record) for record in records]
    return pa.Table.from_pydict(
        {
            "id": [item[1] for item in items],
            "line": [item[0] for item in items],
            "record": list(records),
            "error": [p.get("error") for p in parsed],
            "score": [None if "error" in p else p.get("score") for p in parsed],
            "actor": [actor] * len(items),
        },
        schema=OUTPUT_SCHEMA,
    )


def explain_dataset(
    ds: ray.data.Dataset,
    *,
    actors: int = 2,
    threads_per_actor: int = 1,
    batch_size: int = 64,
    model: str | os.PathLike[str] | None = None,
    **session_options: Any,
) -> ray.data.Dataset:
    """The map step alone, lazy: ``ds`` explained by ``actors`` actors, one Session each.

    ``ds`` has a ``line`` column (int) and string columns ``a`` and ``b``, optionally ``id``
    (default: the line) and ``error`` (a bad row's message, which becomes its error record);
    :func:`pairs_dataset` makes one from a pair file or any Dataset of pairs. Ids are not
    checked for repeats here. Each actor reserves ``threads_per_actor`` CPUs and computes with
    that many threads; ``model`` and ``**session_options`` are ``simattr._native.Session``'s
    (a model name is resolved on each actor's node). The result has ``OUTPUT_SCHEMA``'s
    columns, one row per input row.

    Ray starts the actors without waiting for them by default, so the first actor up may take
    the first blocks; ``ds.context.wait_for_min_actors_s = 600`` (a setting of the context
    ``ds`` shares with the Datasets it came from) makes the pool wait until every actor has
    loaded its model, as :func:`explain_pairs` does.
    """
    if actors < 1 or threads_per_actor < 1 or batch_size < 1:
        raise ValueError("actors, threads_per_actor and batch_size must each be at least 1")
    options = _session_options(session_options, threads_per_actor)
    return ds.map_batches(
        _Explainer,
        fn_constructor_args=(_model_argument(model), options),
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1),
        num_cpus=threads_per_actor,
    )


def _session_options(options: dict[str, Any], threads: int) -> dict[str, Any]:
    """The Session keywords for every actor, local paths made absolute (workers' working
    directories may differ from the driver's)."""
    unknown = sorted(set(options) - SESSION_OPTIONS)
    if "threads" in options:
        raise TypeError("pass threads_per_actor instead of threads")
    if unknown:
        raise TypeError(f"unknown Session option(s): {', '.join(unknown)} (known: {', '.join(sorted(SESSION_OPTIONS))})")
    resolved = dict(options, threads=threads)
    if resolved.get("cache_dir") is not None:
        resolved["cache_dir"] = os.path.abspath(os.fspath(resolved["cache_dir"]))
    return resolved


def _model_argument(model: str | os.PathLike[str] | None) -> str | None:
    """A model folder that exists here as an absolute path; a name (or None) as given."""
    if model is None:
        return None
    path = os.fspath(model)
    return os.path.abspath(path) if os.path.isdir(path) else path


# ---------------------------------------------------------------------------------------
# Output: a directory of JSONL or Parquet files
# ---------------------------------------------------------------------------------------


class _RecordsDatasink(BlockBasedFileDatasink):
    """Writes each write task's rows to one file: ``.jsonl`` (the records, one a line, exactly
    as ``simattr batch`` writes them) or ``.parquet`` (``OUTPUT_SCHEMA``'s columns), and counts
    what it wrote."""

    def __init__(self, path: str, file_format: str, rows_per_file: int) -> None:
        super().__init__(path, file_format=file_format, min_rows_per_file=rows_per_file)
        self._format = file_format
        self.tally: dict[str, Any] = _tally([])

    def write(self, blocks: Iterable[Block], ctx: "TaskContext") -> dict[str, Any]:
        blocks = list(blocks)
        tables = [BlockAccessor.for_block(block).to_arrow() for block in blocks]
        super().write(blocks, ctx)
        return _tally(tables)

    def write_block_to_file(self, block: BlockAccessor, file: "pa.NativeFile") -> None:
        table = block.to_arrow()
        if self._format == "jsonl":
            file.write("".join(record + "\n" for record in table.column("record").to_pylist()).encode("utf-8"))
        else:
            import pyarrow.parquet as pq

            pq.write_table(table.select(OUTPUT_SCHEMA.names).cast(OUTPUT_SCHEMA), file)

    def on_write_complete(self, write_result: "WriteResult") -> None:
        self.tally = _combine([r for r in write_result.write_returns if r])
        super().on_write_complete(write_result)


def _tally(tables: Sequence[pa.Table]) -> dict[str, Any]:
    """Pairs, explained, errors and the actors seen, over some output tables."""
    tables = [t for t in tables if t.num_rows > 0]  # an empty block may have no columns
    rows = sum(t.num_rows for t in tables)
    errors = sum(t.num_rows - t.column("error").null_count for t in tables)
    actors = sorted({a for t in tables for a in t.column("actor").to_pylist()})
    return {"pairs": rows, "explained": rows - errors, "errors": errors, "actors": actors}


def _combine(tallies: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "pairs": sum(t["pairs"] for t in tallies),
        "explained": sum(t["explained"] for t in tallies),
        "errors": sum(t["errors"] for t in tallies),
        "actors": sorted({a for t in tallies for a in t["actors"]}),
    }


def _filesystem(out: str) -> tuple[Any, str]:
    """The pyarrow filesystem of ``out`` and its path there (local paths made absolute)."""
    import pyarrow.fs

    if "://" in out:
        return pyarrow.fs.FileSystem.from_uri(out)
    return pyarrow.fs.LocalFileSystem(), os.path.abspath(out)


def _files_in(out: str) -> list[str]:
    """The files directly in ``out``, sorted."""
    import pyarrow.fs

    fs, path = _filesystem(out)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    return sorted(info.path for info in infos if info.type == pyarrow.fs.FileType.File)


def _refuse_existing(out: str) -> None:
    """As ``simattr batch`` refuses a non-empty ``--out``, refuse a non-empty directory."""
    if _files_in(out):
        raise FileExistsError(f"{out} already holds files; give an empty or new directory")


# ---------------------------------------------------------------------------------------
# The whole run
# ---------------------------------------------------------------------------------------


def explain_pairs(
    pairs: str | os.PathLike[str] | ray.data.Dataset,
    out: str | os.PathLike[str],
    *,
    format: str = "jsonl",
    actors: int = 2,
    threads_per_actor: int = 1,
    batch_size: int = 64,
    rows_per_file: int = 1000,
    model: str | os.PathLike[str] | None = None,
    **session_options: Any,
) -> dict[str, Any]:
    """Explain every pair on Ray, ``simattr batch``'s records written to the directory ``out``.

    Args:
        pairs: a pair file read on the driver exactly as ``simattr batch`` reads it, or a
            Dataset of pairs (see :func:`pairs_dataset` for its columns and numbering).
        out: a new or empty directory (a local path, the same on every node, or a URI pyarrow
            knows, such as ``s3://``).
        format: ``"jsonl"``: files whose lines are the records, each exactly the line
            ``simattr batch`` writes for its pair (files and lines in no particular order;
            :func:`read_records` gives them sorted by line); ``"parquet"``: files with
            ``OUTPUT_SCHEMA``'s columns.
        actors: how many actors, each with its own Session (model loaded once per actor);
            no more than there are blocks.
        threads_per_actor: CPUs reserved by, and threads used in, each actor.
        batch_size: pairs per block; a block goes to one actor in one call.
        rows_per_file: records gathered into one file, and so into one write task (the last
            file may hold fewer). Each write task may start a Ray worker process (Ray ends
            idle workers beyond the CPU count after a second), which costs CPU the actors
            would otherwise use, so files are kept large.
        model: a model folder (the same path on every node) or a name in each node's simattr
            model cache; None: the default model.
        **session_options: ``simattr._native.Session``'s keywords (``steps``, ``layer``,
            ``words``, ``truncate``, ``cache_dir``…). ``words=False, truncate=False`` match
            ``simattr batch`` without ``--words`` and ``--truncate``.

    Returns:
        ``pairs``, ``explained``, ``errors``, ``seconds`` (wall time of the whole call,
        actors' start and model loads included), ``pairs_per_s``, ``files`` (the files in
        ``out`` afterwards, as paths of its filesystem) and ``actors`` (``host:pid`` of
        every actor that explained a pair).
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    if rows_per_file < 1 or batch_size < 1:
        raise ValueError(f"rows_per_file and batch_size must be at least 1, not {rows_per_file}, {batch_size}")
    out = os.fspath(out)
    _refuse_existing(out)
    started = time.perf_counter()
    items = _items(pairs)
    blocks = _blocks(items, batch_size)
    # No more actors (model loads) than blocks to give them.
    actors = min(actors, max(1, -(-len(items) // batch_size)))
    # A Dataset of our own, so its context is ours to set: the pool waits for every actor's
    # model before handing out blocks, spreading them over all actors from the start.
    if hasattr(blocks.context, "wait_for_min_actors_s"):
        blocks.context.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
    explained = explain_dataset(
        blocks, actors=actors, threads_per_actor=threads_per_actor, batch_size=batch_size, model=model, **session_options
    )
    sink = _RecordsDatasink(out if "://" in out else os.path.abspath(out), format, rows_per_file)
    # Writing is light; reserving no CPU for it keeps the actors from starving the writes.
    explained.write_datasink(sink, ray_remote_args={"num_cpus": 0})
    seconds = time.perf_counter() - started
    tally = sink.tally
    return {
        "pairs": tally["pairs"],
        "explained": tally["explained"],
        "errors": tally["errors"],
        "seconds": seconds,
        "pairs_per_s": tally["pairs"] / seconds if seconds > 0 else 0.0,
        "files": _files_in(out),
        "actors": tally["actors"],
    }


def read_records(out: str | os.PathLike[str]) -> list[str]:
    """The records of a ``format="jsonl"`` output directory, sorted by line (ties by id)."""
    fs, _ = _filesystem(os.fspath(out))
    records: list[str] = []
    for path in _files_in(os.fspath(out)):
        if not path.endswith(".jsonl"):
            continue
        with fs.open_input_stream(path) as stream:
            text = stream.read().decode("utf-8")
        records.extend(line for line in text.split("\n") if line)
    keyed = [(json.loads(r), r) for r in records]
    keyed.sort(key=lambda pair: (pair[0]["line"], pair[0]["id"]))
    return [record for _, record in keyed]
