#!/usr/bin/env python3
"""Which `simattr explain --layer` should be the default? Measures, per model and layer, how
much of the score the attributions of an off-the-shelf model account for, how well the
quadrature converges, how long it takes, and (for all-MiniLM-L6-v2) how close its attributions
come to those of an exact (distilled) all-MiniLM-L6-v2.

For every model, every layer L (0 = the embedding output … depth − 1) and every pair, it runs

    simattr --threads 1 explain --model M --layer L --json FILE A B

with the default steps, rule, similarity (cos) and mode, and reads from the JSON: score,
attribution_sum (Σ A), reference_terms (ref_a__b, a__ref_b, ref_a__ref_b), attributable,
completeness_error and the token matrix. Models: all-MiniLM-L6-v2 (layers 0..5),
all-mpnet-base-v2 (layers 0..11), and the exact model given by --exact (layers 0..5).

Per model and layer, over the pairs (mean, median, max; "pooled" = Σ over pairs of the
numerator / Σ over pairs of |score|, which unrelated pairs with a near-zero score cannot blow up):

  ref_share      |score − attributable| / |score|
                 = |ref_a__b + a__ref_b − ref_a__ref_b| / |score|: the share of the score that
                 goes to the reference terms rather than to the token pairs (0 for an exact model);
  sum_vs_score   |Σ A − score| / |score|: how far the attributions are from adding up to the
                 score (reference terms and quadrature error together);
  completeness   |Σ A − attributable| (the quadrature error alone), relative to |score|
                 (also reported relative to max |A|);
  seconds        wall time of one `explain` process (model load included), median over pairs.

Agreement with the exact model (all-MiniLM-L6-v2 only; same tokenizer, the tokens are checked to
be equal): Pearson r between the off-the-shelf matrix at layer L and the exact model's matrix at
the same layer L, over all entries and over content tokens only (rows and columns of [CLS]/[SEP]
removed); the overlap of the top-5 token pairs (by signed value) of the two, as a share of 5; and
Pearson r (all entries, and content tokens) against the exact model's last layer.

Pairs: the classic "A man is playing a guitar." / "Someone plays an instrument.", then --dev-count
pairs from --dev (data/distill/dev.tsv: pairs of held-out topics that the exact model was never
trained on). All dev pairs are scored by all-MiniLM-L6-v2's cosine (one `simattr embed` call),
sorted by (cosine descending, a, b), and the pairs at evenly spaced ranks 0, (n−1)/(k−1), … taken,
so they span paraphrase-like to unrelated, deterministically.

Run (release build; models in the cache by scripts/fetch_model.sh all-MiniLM-L6-v2 and
all-mpnet-base-v2; the exact model from
`python3 scripts/make_distill_pairs.py --held-out-topics 10` and
`simattr train --model all-MiniLM-L6-v2 --pairs data/distill/pairs.tsv --dev data/distill/dev.tsv
--distill --epochs 1 --out EXACT`):

    python3 benches/layer_choice.py --simattr target/release/simattr --exact EXACT \\
        --dev data/distill/dev.tsv --out /tmp/layer-choice

Writes OUT/results.json (settings, pairs, every run's numbers and matrices, the summaries) and
OUT/results.md (the tables). Each run's JSON is kept under OUT/runs/ and reused on a rerun (its
time too), so an interrupted measurement continues where it stopped; --fresh discards them.
Progress goes to stderr. Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLASSIC = ("A man is playing a guitar.", "Someone plays an instrument.")
SPECIAL = {"[CLS]", "[SEP]", "<s>", "</s>", "[PAD]", "<pad>"}
MINILM, MPNET, EXACT = "all-MiniLM-L6-v2", "all-mpnet-base-v2", "exact"


def log(message):
    print(f"[layer_choice {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def read_dev(path):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [(row["a"], row["b"]) for row in rows]


def embed(binary, model, texts, threads):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "embed.json"
        cmd = [binary, "--threads", str(threads), "embed", "--model", model, "--json", str(out), *texts]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())["embeddings"]


def cosine(u, v):
    dot = sum(x * y for x, y in zip(u, v))
    return dot / math.sqrt(sum(x * x for x in u) * sum(y * y for y in v))


def choose_pairs(binary, dev_path, count, threads):
    pairs = read_dev(dev_path)
    texts = sorted({t for pair in pairs for t in pair})
    vectors = dict(zip(texts, embed(binary, MINILM, texts, threads)))
    scored = sorted(((cosine(vectors[a], vectors[b]), a, b) for a, b in pairs), key=lambda s: (-s[0], s[1], s[2]))
    n = len(scored)
    ranks = sorted({round(i * (n - 1) / (count - 1)) for i in range(count)}) if count > 1 else [0]
    chosen = [{"a": CLASSIC[0], "b": CLASSIC[1], "source": "classic", "minilm_cos": None}]
    for rank in ranks:
        cos, a, b = scored[rank]
        chosen.append({"a": a, "b": b, "source": f"dev rank {rank + 1}/{n}", "minilm_cos": cos})
    return chosen


def pair_key(pair):
    return hashlib.sha1(f"{pair['a']}\t{pair['b']}".encode()).hexdigest()[:10]


def explain(binary, model, layer, a, b, path, threads, nice):
    """Runs one explanation into path unless it is there; returns (record, seconds)."""
    timing = path.with_suffix(".seconds")
    if path.exists() and timing.exists():
        return json.loads(path.read_text()), float(timing.read_text())
    cmd = [binary, "--threads", str(threads), "explain", "--model", model, "--layer", str(layer), "--json", str(path), a, b]
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    start = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr}")
    timing.write_text(f"{seconds:.6f}\n")
    return json.loads(path.read_text()), seconds


def pearson(xs, ys):
    n = len(xs)
    if n < 2:
        return float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else float("nan")


def flat(matrix, rows=None, cols=None):
    rows = range(len(matrix)) if rows is None else rows
    cols = range(len(matrix[0])) if cols is None else cols
    return [matrix[i][j] for i in rows for j in cols]


def content(tokens):
    return [i for i, t in enumerate(tokens) if t not in SPECIAL]


def top_k(matrix, k):
    entries = sorted(((v, i, j) for i, row in enumerate(matrix) for j, v in enumerate(row)), key=lambda e: (-e[0], e[1], e[2]))
    return {(i, j) for _, i, j in entries[:k]}


def agreement(run, ref):
    if run["tokens_a"] != ref["tokens_a"] or run["tokens_b"] != ref["tokens_b"]:
        raise SystemExit(f"tokens differ between the models: {run['tokens_a']} {ref['tokens_a']}")
    ca, cb = content(run["tokens_a"]), content(run["tokens_b"])
    return {
        "pearson": pearson(flat(run["attributions"]), flat(ref["attributions"])),
        "pearson_content": pearson(flat(run["attributions"], ca, cb), flat(ref["attributions"], ca, cb)),
        "top5_overlap": len(top_k(run["attributions"], 5) & top_k(ref["attributions"], 5)) / 5,
    }


def measures(record, seconds):
    score, total, attributable = record["score"], record["attribution_sum"], record["attributable"]
    max_abs = max(abs(v) for row in record["attributions"] for v in row)
    completeness = abs(total - attributable)
    return {
        "score": score,
        "attribution_sum": total,
        "reference_terms": record["reference_terms"],
        "attributable": attributable,
        "completeness_error": record["completeness_error"],
        "max_abs_a": max_abs,
        "ref_abs": abs(score - attributable),
        "sum_abs": abs(total - score),
        "completeness_abs": completeness,
        "ref_share": abs(score - attributable) / abs(score),
        "sum_vs_score": abs(total - score) / abs(score),
        "completeness_vs_score": completeness / abs(score),
        "completeness_vs_max_a": completeness / max_abs if max_abs else float("nan"),
        "seconds": seconds,
        "tokens_a": record["tokens_a"],
        "tokens_b": record["tokens_b"],
        "attributions": record["attributions"],
    }


def stats(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return {"mean": None, "median": None, "min": None, "max": None}
    return {"mean": statistics.fmean(values), "median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs, agree):
    """runs: [measures per pair]; agree: {name: [agreement per pair]} or None."""
    pooled = lambda key: sum(r[key] for r in runs) / sum(abs(r["score"]) for r in runs)  # noqa: E731
    summary = {
        "ref_share": {**stats([r["ref_share"] for r in runs]), "pooled": pooled("ref_abs")},
        "sum_vs_score": {**stats([r["sum_vs_score"] for r in runs]), "pooled": pooled("sum_abs")},
        "completeness_vs_score": {**stats([r["completeness_vs_score"] for r in runs]), "pooled": pooled("completeness_abs")},
        "completeness_vs_max_a": stats([r["completeness_vs_max_a"] for r in runs]),
        "seconds": stats([r["seconds"] for r in runs]),
    }
    for name, values in (agree or {}).items():
        summary[name] = {key: stats([v[key] for v in values]) for key in values[0]}
    return summary


def fmt(x, digits=3):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if x != 0 and (abs(x) < 10 ** -digits or abs(x) >= 1000):
        return f"{x:.1e}"
    return f"{x:.{digits}f}"


def table(model, depth, summaries, with_agreement):
    head = [
        "layer",
        "ref share mean / median / max",
        "ref share pooled",
        "\\|ΣA−score\\|/\\|score\\| mean / max",
        "completeness /\\|score\\| mean / max",
        "completeness /max\\|A\\| max",
    ]
    if with_agreement:
        head += [
            "r vs exact same L, mean / min",
            "r content, mean / min",
            "top-5 overlap mean / min",
            "r vs exact L5, mean / min",
            "r content vs exact L5, mean",
        ]
    head += ["s/pair (median)"]
    lines = [f"### {model}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for layer in range(depth):
        s = summaries[str(layer)]
        cells = [
            str(layer),
            f"{fmt(s['ref_share']['mean'])} / {fmt(s['ref_share']['median'])} / {fmt(s['ref_share']['max'])}",
            fmt(s["ref_share"]["pooled"]),
            f"{fmt(s['sum_vs_score']['mean'])} / {fmt(s['sum_vs_score']['max'])}",
            f"{fmt(s['completeness_vs_score']['mean'])} / {fmt(s['completeness_vs_score']['max'])}",
            fmt(s["completeness_vs_max_a"]["max"]),
        ]
        if with_agreement:
            same, last = s["vs_exact_same_layer"], s["vs_exact_last_layer"]
            cells += [
                f"{fmt(same['pearson']['mean'])} / {fmt(same['pearson']['min'])}",
                f"{fmt(same['pearson_content']['mean'])} / {fmt(same['pearson_content']['min'])}",
                f"{fmt(same['top5_overlap']['mean'], 2)} / {fmt(same['top5_overlap']['min'], 2)}",
                f"{fmt(last['pearson']['mean'])} / {fmt(last['pearson']['min'])}",
                fmt(last["pearson_content"]["mean"]),
            ]
        cells.append(fmt(s["seconds"]["median"], 2))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--simattr", required=True, help="the simattr binary (a release build)")
    parser.add_argument("--exact", required=True, help="the exact (distilled) all-MiniLM-L6-v2 folder")
    parser.add_argument("--out", required=True, type=Path, help="where results.json, results.md and runs/ go")
    parser.add_argument("--dev", type=Path, default=ROOT / "data/distill/dev.tsv", help="held-out pairs (a<TAB>b)")
    parser.add_argument("--dev-count", type=int, default=11, help="pairs taken from --dev (default 11)")
    parser.add_argument("--threads", type=int, default=1, help="simattr --threads (default 1)")
    parser.add_argument("--nice", type=int, default=10, help="run explain under nice -n N (default 10; 0: not)")
    parser.add_argument("--models", default=f"{MINILM},{MPNET},{EXACT}", help="which of them to run")
    parser.add_argument("--fresh", action="store_true", help="discard the runs kept from an earlier invocation")
    args = parser.parse_args()

    binary = str(Path(args.simattr).resolve())
    models = {MINILM: (MINILM, 6), MPNET: (MPNET, 12), EXACT: (str(Path(args.exact).resolve()), 6)}
    wanted = [m for m in args.models.split(",") if m]
    if unknown := [m for m in wanted if m not in models]:
        raise SystemExit(f"unknown models {unknown}; known: {list(models)}")
    runs_dir = args.out / "runs"
    if args.fresh and runs_dir.exists():
        for f in runs_dir.rglob("*"):
            if f.is_file():
                f.unlink()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.strip()

    log(f"choosing pairs from {args.dev}")
    pairs = choose_pairs(binary, args.dev, args.dev_count, args.threads)
    for n, p in enumerate(pairs):
        log(f"pair {n}: {p['source']} cos={fmt(p['minilm_cos'])}: {p['a']!r} / {p['b']!r}")

    results = {}  # model -> layer -> [measures per pair]
    total = sum(models[m][1] for m in wanted) * len(pairs)
    done = 0
    for name in wanted:
        path, depth = models[name]
        results[name] = {}
        for layer in range(depth):
            results[name][str(layer)] = []
            for n, pair in enumerate(pairs):
                folder = runs_dir / name
                folder.mkdir(parents=True, exist_ok=True)
                record, seconds = explain(
                    binary, path, layer, pair["a"], pair["b"], folder / f"L{layer:02d}-p{n:02d}-{pair_key(pair)}.json", args.threads, args.nice
                )
                m = measures(record, seconds)
                results[name][str(layer)].append(m)
                done += 1
                log(
                    f"{done}/{total} {name} L{layer} pair {n}: score {m['score']:.4f} ΣA {m['attribution_sum']:.4f} "
                    f"attributable {m['attributable']:.4f} ref share {m['ref_share']:.3f} "
                    f"completeness {m['completeness_abs']:.2e} {seconds:.2f}s"
                )

    summaries = {}
    for name in wanted:
        depth = models[name][1]
        summaries[name] = {}
        for layer in range(depth):
            runs = results[name][str(layer)]
            agree = None
            if name == MINILM and EXACT in results:
                exact = results[EXACT]
                agree = {
                    "vs_exact_same_layer": [agreement(r, e) for r, e in zip(runs, exact[str(layer)])],
                    "vs_exact_last_layer": [agreement(r, e) for r, e in zip(runs, exact[str(models[EXACT][1] - 1)])],
                }
                for n, (same, last) in enumerate(zip(agree["vs_exact_same_layer"], agree["vs_exact_last_layer"])):
                    runs[n]["vs_exact_same_layer"], runs[n]["vs_exact_last_layer"] = same, last
            summaries[name][str(layer)] = summarize(runs, agree)

    settings = {
        "simattr": binary,
        "simattr_version": version,
        "exact": models[EXACT][0],
        "dev": str(args.dev),
        "threads": args.threads,
        "explain": "default steps (50), rule (riemann-right), similarity (cos), mode (auto), backend (cpu)",
        "machine": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
        if os.path.exists("/proc/cpuinfo")
        else platform.processor(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([sys.executable, *sys.argv]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "results.json", "w", encoding="utf-8") as f:
        json.dump({"settings": settings, "pairs": pairs, "runs": results, "summaries": summaries}, f, indent=1)

    md = [
        "# simattr explain: attribution quality by layer",
        "",
        f"- {settings['simattr_version']} (`{binary}`), {settings['explain']}, --threads {args.threads}",
        f"- machine: {settings['machine']}; date: {settings['date']}",
        f"- command: `{settings['command']}`",
        "",
        "## Pairs",
        "",
        "| # | source | MiniLM cos | a | b |",
        "|---|---|---|---|---|",
    ]
    for n, p in enumerate(pairs):
        md.append(f"| {n} | {p['source']} | {fmt(p['minilm_cos'])} | {p['a']} | {p['b']} |")
    md += ["", "## Per model and layer", ""]
    for name in wanted:
        shown = models[name][0] if name != EXACT else f"exact all-MiniLM-L6-v2 ({models[EXACT][0]})"
        md.append(table(shown, models[name][1], summaries[name], name == MINILM and EXACT in results))
    (args.out / "results.md").write_text("\n".join(md), encoding="utf-8")
    log(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}")


if __name__ == "__main__":
    main()
