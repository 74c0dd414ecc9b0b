#!/usr/bin/env bash
# The long-text run of the README's performance section: a 300-word text (256 tokens after
# truncation) against a short one, layer 3, 20 steps, default --max-memory; prints the wall
# time and peak RSS (GNU time). Needs a release build and the default model in the cache.
#   benches/long_text.sh [extra simattr options…]
set -euo pipefail
cd "$(dirname "$0")/.."
long=$(python3 - <<'PY'
import random
random.seed(1)
words = ("the of and to in a is that for it as was with be by on not he this are or his from at "
         "which but have an they you were her she there been one all we their has would when if so "
         "no will more can out about some time them these into only other new may two could than "
         "first way any like people very after many well water made most years over also did back "
         "where much through our down").split()
print(" ".join(random.choice(words) for _ in range(300)).capitalize() + ".")
PY
)
/usr/bin/time -f "elapsed %e s, user %U s, peak RSS %M KB" \
  target/release/simattr "$@" explain --layer 3 --steps 20 "$long" "Someone plays an instrument."
