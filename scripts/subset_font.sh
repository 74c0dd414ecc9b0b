#!/usr/bin/env bash
# Regenerates assets/fonts/DejaVuSans-simattr-subset.ttf, the font the heatmap pictures are drawn
# with (src/output/heatmap/fonts.rs embeds it), from Debian's DejaVu Sans.
#   scripts/subset_font.sh [SOURCE.ttf]   default: /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
#                                          (Debian package fonts-dejavu-core)
#   python: $PYTHON (default python3); fontTools is installed into a throw-away venv under /tmp.
# Licence: assets/fonts/LICENSE-DejaVu.txt (Bitstream Vera and Arev licences; DejaVu changes are
# in the public domain). The subset keeps the family name "DejaVu Sans", which the licence allows
# (only "Bitstream", "Vera", "Arev" and "Tavmjong Bah" may not name a modified font).
#
# Unicode ranges kept (everything else, CJK included, comes from a system font at run time):
#   U+0020-007E  Basic Latin (ASCII)
#   U+00A0-00FF  Latin-1 Supplement
#   U+0100-017F  Latin Extended-A (byte-level BPE's Ġ U+0120, Ċ U+010A, ...)
#   U+0180-024F  Latin Extended-B
#   U+02B0-02FF  Spacing Modifier Letters
#   U+0300-036F  Combining Diacritical Marks
#   U+0370-03FF  Greek and Coptic
#   U+0400-052F  Cyrillic, Cyrillic Supplement
#   U+1E00-1EFF  Latin Extended Additional
#   U+2000-206F  General Punctuation (…, –, —, ‘’“”)
#   U+20A0-20CF  Currency Symbols
#   U+2100-214F  Letterlike Symbols
#   U+2190-21FF  Arrows (↔)
#   U+2200-22FF  Mathematical Operators (−, ×, ≈)
#   U+2580-259F  Block Elements (SentencePiece's ▁ U+2581)
#   U+FFFD       Replacement Character
# Hinting and OpenType layout tables (GSUB/GPOS) are dropped: the renderer draws unhinted,
# unshaped glyphs, so they would only add size. The .notdef box is kept: it is what a character
# no font has is drawn as.
set -euo pipefail

source_ttf="${1:-/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf}"
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/assets/fonts/DejaVuSans-simattr-subset.ttf"
unicodes="U+0020-007E,U+00A0-00FF,U+0100-017F,U+0180-024F,U+02B0-02FF,U+0300-036F,U+0370-03FF,\
U+0400-052F,U+1E00-1EFF,U+2000-206F,U+20A0-20CF,U+2100-214F,U+2190-21FF,U+2200-22FF,U+2580-259F,U+FFFD"

if [[ ! -f "$source_ttf" ]]; then
  echo "no $source_ttf: install Debian's fonts-dejavu-core or pass the DejaVuSans.ttf to subset" >&2
  exit 1
fi
venv="${TMPDIR:-/tmp}/simattr-fonttools-venv"
if [[ ! -x "$venv/bin/pyftsubset" ]]; then
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install --quiet 'fonttools==4.68.0'
fi
mkdir -p "$(dirname "$out")"
"$venv/bin/pyftsubset" "$source_ttf" \
  --unicodes="$unicodes" \
  --no-hinting \
  --layout-features='' \
  --notdef-glyph --notdef-outline \
  --name-IDs='*' --name-legacy --name-languages='*' \
  --drop-tables+=FFTM,MATH \
  --output-file="$out"
echo "wrote $out ($(wc -c <"$out") bytes)"
