#!/usr/bin/env python3
"""Scaling of simattr.ray: pairs/s of 1 and 2 single-threaded Ray actors against
`simattr batch --threads 1` and `--threads 2` (and the Python module alone, one thread, no
Ray), side by side on the same pairs.

Every pair is two texts never seen before (the throughput is set by the distinct texts; see
docs/performance.md, "Many pairs"), so nothing is reused from a cache. Each configuration runs once per
repeat, in turn, and the table gives medians over the repeats. Times are wall clock of the
whole run: for the CLI the process (model load included), for Ray the `explain_pairs` call
(actors started and each loading the model, included); the Ray cluster itself is started once
beforehand, as on a real cluster. Every run's records are checked to equal the CLI's.

    benches/ray_scaling.py [--pairs 40] [--steps 10] [--repeats 3] [--batch-size 4] [--model NAME|DIR]

Needs a release build (target/release/simattr), simattr's Python package with the `ray` extra,
and the model: all-MiniLM-L6-v2 from the model cache (scripts/fetch_model.sh) by default.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402
import ray.data  # noqa: E402

import simattr.ray as simattr_ray  # noqa: E402
from simattr import _native  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CLI = REPO / "target" / "release" / "simattr"

SUBJECTS = ["A man", "The woman", "A child", "The old dog", "A young cat", "My neighbour", "The teacher", "A tourist"]
VERBS = ["plays", "watches", "paints", "sells", "buys", "cleans"]
OBJECTS = ["a guitar", "the sea", "some flowers", "an old car", "a red ball", "the window", "a small boat"]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=40, help="pairs, each of two new texts (default 40)")
    parser.add_argument("--steps", type=int, default=10, help="integration steps (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration (default 3)")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="a model name in the cache or a folder")
    parser.add_argument("--batch-size", type=int, default=4, help="pairs per Ray block (default 4)")
    return parser.parse_args()


def write_pairs(path: Path, pairs: int) -> None:
    """`pairs` pairs of distinct short sentences, no text twice."""
    pool = [f"{s} {v} {o}." for s in SUBJECTS for v in VERBS for o in OBJECTS]
    if 2 * pairs > len(pool):
        raise SystemExit(f"at most {len(pool) // 2} pairs of distinct texts")
    with path.open("w", encoding="utf-8") as f:
        for k in range(pairs):
            f.write(json.dumps({"a": pool[2 * k], "b": pool[2 * k + 1]}) + "\n")


def run_cli(model: str, pairs: Path, out: Path, steps: int, threads: int) -> float:
    """Seconds of one `simattr batch` process."""
    command = [str(CLI), "batch", str(pairs), "--out", str(out), "--model", model, "--steps", str(steps)]
    command += ["--threads", str(threads)]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def run_session(model: str, pairs: Path, out: Path, steps: int) -> float:
    """Seconds of the Python module alone, no Ray: one Session (loading the model included),
    one thread, `batch_records` over every pair."""
    started = time.perf_counter()
    session = _native.Session(model, steps=steps, threads=1, words=False, truncate=False)
    records = session.batch_records(_native.read_pairs(str(pairs)))
    seconds = time.perf_counter() - started
    out.write_text("".join(record + "\n" for record in records), encoding="utf-8")
    return seconds


def run_ray(model: str, pairs: Path, out: Path, steps: int, actors: int, batch_size: int) -> float:
    """Seconds of one `explain_pairs` call with `actors` single-threaded actors."""
    summary = simattr_ray.explain_pairs(
        pairs, out, actors=actors, threads_per_actor=1, batch_size=batch_size, model=model,
        steps=steps, words=False, truncate=False,
    )
    if len(summary["actors"]) != actors:
        raise SystemExit(f"{actors} actors asked for, {len(summary['actors'])} worked: {summary['actors']}")
    return summary["seconds"]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    args = arguments()
    model = _native.resolve_model(args.model)
    work = Path(tempfile.mkdtemp(prefix="ray-scaling-"))
    try:
        pairs = work / "pairs.jsonl"
        write_pairs(pairs, args.pairs)
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        ray.data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        configurations = {
            "`simattr batch --threads 1`": lambda out: run_cli(model, pairs, out, args.steps, 1),
            "`simattr batch --threads 2`": lambda out: run_cli(model, pairs, out, args.steps, 2),
            "`Session.batch_records`, 1 thread, no Ray": lambda out: run_session(model, pairs, out, args.steps),
            "`explain_pairs`, 1 actor × 1 thread": lambda out: run_ray(model, pairs, out, args.steps, 1, args.batch_size),
            "`explain_pairs`, 2 actors × 1 thread": lambda out: run_ray(model, pairs, out, args.steps, 2, args.batch_size),
        }
        seconds: dict[str, list[float]] = {name: [] for name in configurations}
        reference: list[str] | None = None
        for repeat in range(args.repeats):
            for n, (name, run) in enumerate(configurations.items()):
                out = work / f"out-{repeat}-{n}"
                if not name.startswith("`explain_pairs"):
                    out = out.with_suffix(".jsonl")
                seconds[name].append(run(out))
                records = out.read_text().splitlines() if out.is_file() else simattr_ray.read_records(out)
                reference = reference or records
                if records != reference:
                    raise SystemExit(f"{name}: the records differ from the CLI's")
                print(f"repeat {repeat + 1}: {name}: {seconds[name][-1]:.2f} s", flush=True)
        ray.shutdown()
        print_table(args, model, seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_table(args: argparse.Namespace, model: str, seconds: dict[str, list[float]]) -> None:
    print()
    print(
        f"{Path(model).name}, {args.pairs} pairs of distinct texts ({2 * args.pairs} texts), {args.steps} steps, "
        f"layer 0; {os.cpu_count()} cores ({cpu_name()}); medians of {args.repeats}, "
        f"{time.strftime('%Y-%m-%d')}; records identical in every run"
    )
    print()
    print("| run | median s | pairs/s | × `--threads 1` |")
    print("|---|---|---|---|")
    base = statistics.median(next(iter(seconds.values())))
    for name, runs in seconds.items():
        median = statistics.median(runs)
        print(f"| {name} | {median:.2f} | {args.pairs / median:.2f} | {base / median:.2f} |")


if __name__ == "__main__":
    main()
