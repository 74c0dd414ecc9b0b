#!/usr/bin/env bash
# Throughput of `simattr batch` (docs/performance.md's "Many pairs" figures): pairs/s on a real model,
# default settings (layer 0, 50 riemann-right steps, cos, --mode auto), three ways:
#   distinct  every pair two texts never seen before: each pair integrates two texts
#   reuse     10 pairs per distinct text, over the same texts: each text integrated once,
#             then reused from memory
#   cached    the reuse run again with a warm --cache DIR: nothing integrated
# (What packing gains for `embed`, and so for ranking with --query, is measured by the
# criterion bench `explain`'s "embed" group: packed against one sentence per pass.)
# The pairs/s are the program's own (after the model has loaded). Needs a release build and
# the model in the cache (scripts/fetch_model.sh NAME).
#   benches/batch_throughput.sh minilm|mpnet [distinct texts, default 40] [extra simattr options…]
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-minilm}" in
  minilm) model=all-MiniLM-L6-v2 ;;
  mpnet) model=all-mpnet-base-v2 ;;
  *) echo "usage: $0 minilm|mpnet [texts] [simattr options…]" >&2; exit 2 ;;
esac
texts=${2:-40}
shift $(( $# >= 2 ? 2 : $# ))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$texts" "$work" <<'PY'
import json, sys
texts, work = int(sys.argv[1]), sys.argv[2]
subjects = ["A man", "The woman", "A child", "The old dog", "A young cat", "My neighbour", "The teacher", "A tourist"]
verbs = ["plays", "watches", "paints", "sells", "buys", "cleans"]
objects = ["a guitar", "the sea", "some flowers", "an old car", "a red ball", "the window", "a small boat"]
pool = [f"{s} {v} {o}." for s in subjects for v in verbs for o in objects]
assert 2 * texts <= len(pool)
with open(f"{work}/distinct.jsonl", "w") as f:
    for k in range(texts // 2):
        f.write(json.dumps({"a": pool[2 * k], "b": pool[2 * k + 1]}) + "\n")
chosen = pool[texts:2 * texts]
with open(f"{work}/reuse.jsonl", "w") as f:
    for k in range(10 * texts // 2):
        f.write(json.dumps({"a": chosen[k % texts], "b": chosen[(7 * k + 3) % texts]}) + "\n")
PY
run() {
  local name=$1; shift
  local line
  line=$(target/release/simattr "$@" 2>&1 >/dev/null | tail -1)
  echo "$name: $line"
}
run "distinct ($((texts / 2)) pairs, $texts texts)" batch --model "$model" "$work/distinct.jsonl" --out "$work/d.jsonl" "$@"
run "reuse ($((5 * texts)) pairs, $texts texts, cold --cache)" batch --model "$model" "$work/reuse.jsonl" --out "$work/r.jsonl" --cache "$work/cache" "$@"
run "cached ($((5 * texts)) pairs, warm --cache)" batch --model "$model" "$work/reuse.jsonl" --out "$work/c.jsonl" --cache "$work/cache" "$@"
cmp "$work/r.jsonl" "$work/c.jsonl" && echo "reuse and cached records are identical"
