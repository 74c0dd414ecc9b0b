#!/usr/bin/env bash
# The long-text runs of docs/performance.md ("Memory and long texts"), on the fast backend with the default
# --max-memory; each prints the wall time and peak RSS (GNU time). Needs a release build and
# the model in the cache (scripts/fetch_model.sh NAME).
#   benches/long_text.sh minilm [extra simattr options…]  a 300-word text (256 tokens after
#       truncation to max_seq_length) against a short one, all-MiniLM-L6-v2, layer 3, 20 steps
#   benches/long_text.sh mpnet [extra simattr options…]   a 300-token text (297 common words, a full stop,
#       <s>, </s>; max_seq_length is 384) against a short one, all-mpnet-base-v2, layer 11, 20 steps
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-minilm}" in
  minilm) model=all-MiniLM-L6-v2 words=300 layer=3 ;;
  mpnet) model=all-mpnet-base-v2 words=297 layer=11 ;;
  *) echo "usage: $0 minilm|mpnet [simattr options…]" >&2; exit 2 ;;
esac
shift || true
long=$(python3 - "$words" <<'PY'
import random
import sys
random.seed(1)
words = ("the of and to in a is that for it as was with be by on not he this are or his from at "
         "which but have an they you were her she there been one all we their has would when if so "
         "no will more can out about some time them these into only other new may two could than "
         "first way any like people very after many well water made most years over also did back "
         "where much through our down").split()
print(" ".join(random.choice(words) for _ in range(int(sys.argv[1]))).capitalize() + ".")
PY
)
/usr/bin/time -f "elapsed %e s, user %U s, peak RSS %M KB" \
  target/release/simattr "$@" explain --model "$model" --layer "$layer" --steps 20 --json /tmp/long_text.json \
  "$long" "Someone plays an instrument."
python3 -c "import json; d=json.load(open('/tmp/long_text.json')); print('tokens', len(d['tokens_a']), '+', len(d['tokens_b']))"
