#!/usr/bin/env python3
"""Makes the sentence pairs of a distillation run from data/distill/sentences.txt.

The input groups sentences by topic: a line `# topic: NAME`, then that topic's sentences one
per line; blank lines and other `#` lines are skipped. The output is a TSV with the header
`a<TAB>b` and no score column (distillation takes the original model's cosine as the target):
about 45% of the pairs join two sentences of one topic, the rest join sentences of different
topics. No sentence is paired with itself, no unordered pair appears twice, and the output
depends only on the input, --pairs and --seed.

    python3 scripts/make_distill_pairs.py [--pairs 4000] [--seed 13] [--out PATH] [--sentences PATH]

With --held-out-topics N, N topics (chosen by the seed) are left out of --out entirely and
paired among themselves into --dev-out (--dev-pairs of them): dev pairs of sentences the
training never saw, for `simattr train --dev`.
"""

import argparse
import csv
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAME_TOPIC_SHARE = 0.45


def read_topics(path):
    """[(topic, [sentence, ...]), ...] in file order; a sentence seen before is dropped."""
    topics, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            text = line.strip()
            if not text:
                continue
            if text.startswith("#"):
                header = text[1:].strip()
                if header.lower().startswith("topic:"):
                    topics.append((header[len("topic:"):].strip(), []))
                continue
            if not topics:
                sys.exit(f"{path}:{number}: a sentence before the first `# topic:` line")
            if "\t" in text:
                sys.exit(f"{path}:{number}: a sentence contains a tab")
            if text not in seen:
                seen.add(text)
                topics[-1][1].append(text)
    return [(name, sentences) for name, sentences in topics if sentences]


def make_pairs(topics, count, seed):
    rng = random.Random(seed)
    sentences = [(t, s) for t, (_, group) in enumerate(topics) for s in group]
    same_all = [
        (group[i], group[j]) for _, group in topics for i in range(len(group)) for j in range(i + 1, len(group))
    ]
    n = len(sentences)
    cross_capacity = n * (n - 1) // 2 - len(same_all)
    same_count = round(SAME_TOPIC_SHARE * count)
    cross_count = count - same_count
    if same_count > len(same_all) or cross_count > cross_capacity:
        sys.exit(
            f"cannot make {count} pairs: the sentences allow {len(same_all)} same-topic "
            f"and {cross_capacity} cross-topic pairs ({same_count} and {cross_count} needed)"
        )

    rng.shuffle(same_all)
    pairs = same_all[:same_count]
    seen = {frozenset(p) for p in pairs}
    # Cross-topic pairs by rejection: the candidates far outnumber the pairs wanted.
    while len(pairs) < count:
        (ti, a), (tj, b) = sentences[rng.randrange(n)], sentences[rng.randrange(n)]
        key = frozenset((a, b))
        if ti == tj or key in seen:
            continue
        seen.add(key)
        pairs.append((a, b))

    rng.shuffle(pairs)
    return [(a, b) if rng.random() < 0.5 else (b, a) for a, b in pairs], same_count


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=4000, help="how many pairs (default 4000)")
    parser.add_argument("--seed", type=int, default=13, help="random seed (default 13)")
    parser.add_argument("--out", type=Path, default=ROOT / "data/distill/pairs.tsv", help="the TSV to write")
    parser.add_argument(
        "--sentences", type=Path, default=ROOT / "data/distill/sentences.txt", help="the sentences by topic"
    )
    parser.add_argument("--held-out-topics", type=int, default=0, help="topics kept out of --out (default 0)")
    parser.add_argument("--dev-pairs", type=int, default=400, help="pairs of the held-out topics (default 400)")
    parser.add_argument("--dev-out", type=Path, default=ROOT / "data/distill/dev.tsv", help="their TSV")
    args = parser.parse_args()
    if args.pairs < 1:
        sys.exit("--pairs must be at least 1")

    topics = read_topics(args.sentences)
    if not 0 <= args.held_out_topics < len(topics):
        sys.exit(f"--held-out-topics must be in [0, {len(topics)})")
    order = list(range(len(topics)))
    random.Random(args.seed + 1).shuffle(order)
    held_out = set(order[: args.held_out_topics])
    kept = [t for n, t in enumerate(topics) if n not in held_out]
    outputs = [(args.out, kept, args.pairs, args.seed)]
    if held_out:
        outputs.append((args.dev_out, [t for n, t in enumerate(topics) if n in held_out], args.dev_pairs, args.seed + 2))
    for path, group, count, seed in outputs:
        pairs, same_count = make_pairs(group, count, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
            writer.writerow(["a", "b"])
            writer.writerows(pairs)
        sentence_count = sum(len(sentences) for _, sentences in group)
        print(
            f"{path}: {len(pairs)} pairs ({same_count} same-topic, {len(pairs) - same_count} cross-topic) "
            f"from {sentence_count} sentences in {len(group)} topics, seed {seed}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
