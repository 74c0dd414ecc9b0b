#!/usr/bin/env python3
"""Training throughput, side by side on one machine: `simattr train` against
sentence-transformers' own `fit` on torch CPU, the same pairs, batch size, thread count and
epoch, in alternating rounds (medians reported).

Three runs per round:
  simattr            `simattr train --distill` (the exact model: texts and their same-length
                     references forward and backward), pairs/s of the epoch itself as the run
                     records it in simattr_training.json;
  st-fit             `SentenceTransformer.fit` with CosineSimilarityLoss on the plain model
                     (no reference: half the work);
  st-fit-shifted     the same with tests/reference/shifted_reference.py's ShiftedReference
                     module between Transformer and Pooling (the exact model in PyTorch).
Dropout 0.1 on every side (sentence-transformers' training mode).

Usage (from the repository root, with torch, sentence-transformers and datasets installed):
  python benches/train_throughput.py --model ~/.cache/simattr/models/all-MiniLM-L6-v2 \
      --pairs data/distill/pairs.tsv --count 480 --threads 2 --rounds 3
"""
import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def read_pairs(path, count):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return rows[:count]


def run_simattr(binary, model, pairs_path, threads, work):
    out = os.path.join(work, "simattr-exact")
    cmd = [binary, "train", "--model", model, "--pairs", pairs_path, "--distill", "--out", out, "--force",
           "--epochs", "1", "--batch-size", "16", "--threads", str(threads), "--explain-pairs", "0",
           "--dev-fraction", "0.05", "--checkpoint-dir", os.path.join(work, "ckpt")]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = json.load(open(os.path.join(out, "simattr_training.json")))
    epoch = record["history"][-1]
    return epoch["pairs_per_second"], record["train_pairs"]


def run_st(model_dir, rows, threads, shifted):
    import torch
    torch.set_num_threads(threads)
    from sentence_transformers import InputExample, SentenceTransformer, losses
    from torch.utils.data import DataLoader

    if shifted:
        sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
        from shifted_reference import ShiftedReference
        transformer = Transformer(model_dir)
        pooling = Pooling(transformer.get_word_embedding_dimension(), "mean")
        shift = ShiftedReference(transformer)
        model = SentenceTransformer(modules=[transformer, shift, pooling], device="cpu")
    else:
        model = SentenceTransformer(model_dir, device="cpu")
    # As simattr's run: 5% held out, the rest trained on.
    train = rows[: len(rows) - round(0.05 * len(rows))]
    examples = [InputExample(texts=[r["a"], r["b"]], label=0.5) for r in train]
    loader = DataLoader(examples, shuffle=True, batch_size=16)
    loss = losses.CosineSimilarityLoss(model)
    start = time.perf_counter()
    model.fit(train_objectives=[(loader, loss)], epochs=1, warmup_steps=max(1, len(loader) // 10),
              show_progress_bar=False)
    return len(examples) / (time.perf_counter() - start), len(examples)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--pairs", required=True)
    p.add_argument("--count", type=int, default=480)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "simattr"))
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("WANDB_DISABLED", "true")
    rows = read_pairs(args.pairs, args.count)
    results = {"simattr": [], "st-fit": [], "st-fit-shifted": []}
    with tempfile.TemporaryDirectory() as work:
        subset = os.path.join(work, "pairs.tsv")
        with open(subset, "w", newline="") as f:
            w = csv.writer(f, delimiter="\t")
            w.writerow(["a", "b"])
            for r in rows:
                w.writerow([r["a"], r["b"]])
        for round_ in range(args.rounds):
            for name in results:
                if name == "simattr":
                    rate, n = run_simattr(args.binary, args.model, subset, args.threads, work)
                else:
                    # A fresh interpreter per run, so that no run inherits another's caches.
                    code = ("import json,sys; sys.path.insert(0, %r); import train_throughput as t; "
                            "print(json.dumps(t.run_st(%r, %r, %d, %r)))") % (HERE, args.model, rows, args.threads,
                                                                             name == "st-fit-shifted")
                    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
                    rate, n = json.loads(out.stdout.strip().splitlines()[-1])
                results[name].append(rate)
                print(f"round {round_ + 1} {name:15s} {rate:6.1f} pairs/s ({n} pairs)", file=sys.stderr)
    medians = {k: statistics.median(v) for k, v in results.items()}
    print(f"threads {args.threads}, batch 16, {args.count} pairs, {args.rounds} rounds (median pairs/s):")
    for k, v in medians.items():
        print(f"  {k:15s} {v:6.1f}   runs {', '.join(f'{x:.1f}' for x in results[k])}")
    print(f"  simattr / st-fit         {medians['simattr'] / medians['st-fit']:.2f}x")
    print(f"  simattr / st-fit-shifted {medians['simattr'] / medians['st-fit-shifted']:.2f}x")
    if args.json:
        json.dump({"runs": results, "medians": medians, "threads": args.threads, "pairs": args.count}, open(args.json, "w"),
                  indent=2)


if __name__ == "__main__":
    main()
