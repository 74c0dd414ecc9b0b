"""The notebook display: IPython's formatter gives the interactive report in a sandboxed iframe,
whose srcdoc is the page `simattr explain --html` writes; the page, rendered in headless
Chromium with #selftest, shows exactly the explanation's numbers (the checks of tests/html.rs),
and the frame itself loads in Chromium and draws the heatmap. Chromium must be installed: a
missing browser fails these tests, it does not skip them."""

from __future__ import annotations

import html
import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import pytest
from IPython.core.formatters import DisplayFormatter

from simattr import _native
from simattr.explanation import Explanation

#: Texts the tiny vocabulary splits into several tokens per word, so the word view differs.
A = "Guitars, unbelievably loud."
B = "A quiet piano"
#: How long one Chromium run may take.
BROWSER_LIMIT_S = 60

Json = Dict[str, Any]


@pytest.fixture(scope="module")
def expl(session: _native.Session) -> Explanation:
    """The explanation of (A, B) with the word view."""
    return Explanation(*session.explain(A, B))


@pytest.fixture(scope="module")
def plain(plain_session: _native.Session) -> Explanation:
    """The explanation of (A, B) without the word view."""
    return Explanation(*plain_session.explain(A, B))


# --- Helpers: the frame, the page, Chromium. ---


def html_of(expl: Explanation) -> str:
    """What a notebook shows: IPython's text/html for the explanation."""
    data, _ = DisplayFormatter().format(expl)
    assert "text/html" in data, f"no text/html among {sorted(data)}"
    return str(data["text/html"])


def srcdoc_of(frame: str) -> str:
    """The unescaped srcdoc attribute of the one iframe in `frame`."""
    found = re.findall(r'<iframe\b[^>]*?\ssrcdoc="([^"]*)"', frame)
    assert len(found) == 1, f"not one iframe with a srcdoc: {frame[:300]}"
    return html.unescape(found[0])


def page_of(expl: Explanation) -> str:
    """The page the engine writes for the explanation, titled as `explain --html` titles it."""
    return _native.report_html(expl.to_json(), _native.pair_title(expl.text_a, expl.text_b))


def embedded(page: str) -> Json:
    """The record embedded in the page for its script."""
    found = re.search(r'<script type="application/json" id="simattr-data">(.*?)</script>', page, re.S)
    assert found, "the page embeds no data"
    return json.loads(found.group(1))


def scale_of(page: str) -> Json:
    """The heatmap's colour scale the page hands to its script (SIMATTR_SCALE)."""
    found = re.search(r"const SIMATTR_SCALE = (\{.*?\});\n", page)
    assert found, "the page has no colour scale"
    return json.loads(found.group(1))


def run_chromium(chromium: Path, args: Sequence[str], profile: Path) -> str:
    """Headless Chromium with a fresh profile; its stdout. Fails after BROWSER_LIMIT_S."""
    profile.mkdir(parents=True, exist_ok=True)
    command = [
        str(chromium),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--mute-audio",
        f"--user-data-dir={profile}",
        *args,
    ]
    try:
        run = subprocess.run(
            command, capture_output=True, text=True, timeout=BROWSER_LIMIT_S, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"chromium {args} ran over {BROWSER_LIMIT_S} s: {error.stderr!r}")
    assert run.returncode == 0, f"chromium {args} failed ({run.returncode}): {run.stderr}"
    return run.stdout


def dump_dom(chromium: Path, page: Path, fragment: str, tmp: Path) -> str:
    """The DOM of `page` (opened with `fragment`) after its scripts ran."""
    dom = run_chromium(chromium, ["--dump-dom", page.as_uri() + fragment], tmp / "profile-dom")
    assert "</html>" in dom, f"no DOM came back: {dom[:300]}"
    return dom


def selftest_of(dom: str) -> Json:
    """The JSON report the page's #selftest wrote into <pre id="simattr-selftest">."""
    found = re.search(r'<pre id="simattr-selftest"[^>]*>(.*?)</pre>', dom, re.S)
    assert found, "the dumped DOM has no selftest element"
    assert found.group(1), "the page wrote no selftest result: did its script run?"
    return json.loads(html.unescape(found.group(1)))


# --- What the page shows, against the explanation (tests/html.rs's checks). ---


def same(x: float, y: float) -> bool:
    return x == y or (math.isnan(x) and math.isnan(y))


def colour(v: float, max_abs: float, scale: Json) -> str:
    """The page's colour of `v`: heatmap::colour (layout.rs) over the page's own anchors."""
    if not math.isfinite(v):
        rgb = scale["non_finite"]
    elif max_abs <= 0:
        rgb = scale["white"]
    else:
        t = min(1.0, max(-1.0, v / max_abs))
        arm = scale["blue_arm"] if t < 0 else scale["red_arm"]
        pos = abs(t) * (len(arm) - 1)
        i = min(math.floor(pos), len(arm) - 2)
        f = pos - i
        rgb = [min(255, max(0, math.floor(a + (b - a) * f + 0.5))) for a, b in zip(arm[i], arm[i + 1])]
    return f"rgb({rgb[0]}, {rgb[1]}, {rgb[2]})"


def max_abs(values: Sequence[float]) -> float:
    return max((abs(v) for v in values if math.isfinite(v)), default=0.0)


def shows(shown: str, v: float) -> bool:
    """Whether `shown` is `v` as the page prints it: sign always, four decimals."""
    sign_ok = shown.startswith("-" if v < 0 else "+")
    decimals_ok = "." in shown and len(shown.split(".", 1)[1]) == 4
    return sign_ok and decimals_ok and abs(float(shown) - v) <= 0.5e-4 + 1e-12


def fold(values: Sequence[float]) -> float:
    """A left-to-right sum from 0, as the page (and the Rust test) sums a row or column."""
    total = 0.0
    for v in values:
        total += v
    return total


def check_view(name: str, shown: Json, a: List[str], b: List[str], m: np.ndarray, scale: Json) -> None:
    """One view the page drew against its labels and matrix, and the explanation's top pairs."""
    rows, cols = m.shape
    assert shown["view"] == name
    assert shown["row_labels"] == a, f"{name}: row labels"
    assert shown["col_labels"] == b, f"{name}: column labels"
    assert shown["positions_ok"] is True, f"{name}: a cell's data-i/data-j is not its place"
    values, colours = shown["values"], shown["colours"]
    assert len(values) == rows, f"{name}: rows drawn"
    cell_scale = max_abs(list(m.ravel()))
    for i in range(rows):
        assert len(values[i]) == cols, f"{name}: cells in row {i}"
        for j in range(cols):
            dom = float(values[i][j])
            assert same(dom, float(m[i, j])), f"{name}: cell ({i}, {j}) holds {dom!r}, the matrix {m[i, j]!r}"
            assert colours[i][j] == colour(float(m[i, j]), cell_scale, scale), f"{name}: colour of ({i}, {j})"

    row_sums = [fold(list(m[i])) for i in range(rows)]
    col_sums = [fold(list(m[:, j])) for j in range(cols)]
    sum_scale = max_abs(row_sums + col_sums)
    for key, labels, sums in (("tokens_a", a, row_sums), ("tokens_b", b, col_sums)):
        drawn = shown[key]
        assert [t["text"] for t in drawn] == labels, f"{name}: {key}"
        for k, token in enumerate(drawn):
            assert same(float(token["value"]), sums[k]), f"{name}: {key}[{k}] sum {token['value']} vs {sums[k]!r}"
            assert token["colour"] == colour(sums[k], sum_scale, scale), f"{name}: {key}[{k}] colour"

    hovers = shown["hovers"]
    kinds = [h["kind"] for h in hovers]
    for kind in ("cell", "row-label", "col-label", "token-a", "token-b", "top-pair", "none"):
        assert kind in kinds, f"{name}: no hover of a {kind}: {kinds}"
    for h in hovers:
        if h["kind"] == "cell":
            i, j = h["i"], h["j"]
            assert h["active"] == [[i, j]] and h["cells"] == [], f"{name}: hover {h}"
            pair, value = h["info"].rsplit(": ", 1)
            assert pair == f"{a[i]} ↔ {b[j]}" and shows(value, float(m[i, j])), f"{name}: hover {h}"
        elif h["kind"] in ("row-label", "token-a"):
            assert h["cells"] == [[h["index"], j] for j in range(cols)], f"{name}: hover {h} is not a row"
        elif h["kind"] in ("col-label", "token-b"):
            assert h["cells"] == [[i, h["index"]] for i in range(rows)], f"{name}: hover {h} is not a column"
        elif h["kind"] == "none":
            assert h["cells"] == [] and h["active"] == [], f"{name}: highlights left after the pointer left"


def check_top_pairs(name: str, shown: Json, expl: Explanation, words: bool) -> None:
    """The page's strongest pairs are Explanation.top_pairs(10), at the right cells."""
    expected = expl.top_pairs(10, words=words)
    a, b, m = (expl.words_a, expl.words_b, expl.word_attributions) if words else (
        expl.tokens_a,
        expl.tokens_b,
        expl.attributions,
    )
    assert a is not None and b is not None and m is not None
    listed = shown["top_pairs"]
    assert len(listed) == len(expected) == min(10, m.size), f"{name}: strongest pairs listed"
    for rank, (p, (ta, tb, v)) in enumerate(zip(listed, expected)):
        i, j = p["i"], p["j"]
        assert (a[i], b[j]) == (ta, tb) and p["pair"] == f"{ta} ↔ {tb}", f"{name}: top pair {rank}"
        assert float(p["value"]) == v == float(m[i, j]), f"{name}: top pair {rank} value"
        assert shows(p["shown"], v), f"{name}: top pair {rank} shows {p['shown']}"


def check_selftest(result: Json, expl: Explanation, scale: Json) -> None:
    """The whole selftest report against the explanation."""
    assert result["errors"] == [], f"the page's script failed: {result['errors']}"
    fields = result["fields"]
    expected = {"score": expl.score, "attribution_sum": expl.attribution_sum, **expl.reference_terms}
    expected.update(attributable=expl.attributable, completeness_error=expl.completeness_error)
    for key, value in expected.items():
        assert same(float(fields[key]), value), f"{key}: the page shows {fields[key]}, the explanation {value!r}"
    provenance = expl.provenance
    assert fields["similarity"] == expl.similarity
    assert fields["model"] == provenance["model"]
    assert fields["rule"] == provenance["rule"]
    assert fields["layer"] == str(provenance["layer"]) == str(expl.layer)
    assert fields["steps"] == str(provenance["steps"]) == str(expl.steps)
    assert (result["text_a"], result["text_b"]) == (expl.text_a, expl.text_b)

    tokens = result["views"]["tokens"]
    check_view("tokens", tokens, expl.tokens_a, expl.tokens_b, expl.attributions, scale)
    check_top_pairs("tokens", tokens, expl, words=False)
    words = expl.word_attributions
    if words is None:
        assert result["switch_visible"] is False, "a word/token switch without a word view"
        assert result["views_available"] == ["tokens"]
        return
    assert result["switch_visible"] is True, "no word/token switch"
    shown = result["views"]["words"]
    assert shown["pressed"] == ["words"], "the switch does not show the word view pressed"
    assert expl.words_a is not None and expl.words_b is not None
    check_view("words", shown, expl.words_a, expl.words_b, words, scale)
    check_top_pairs("words", shown, expl, words=True)
    assert result["final_view"] == "tokens", "the switch did not go back to the tokens"


# --- The tests. ---


@pytest.mark.parametrize("which", ["words", "plain"])
def test_formatter_gives_the_report_frame(which: str, expl: Explanation, plain: Explanation) -> None:
    explanation = expl if which == "words" else plain
    data, _ = DisplayFormatter().format(explanation)
    assert data["text/plain"] == repr(explanation)
    frame = html_of(explanation)
    assert frame.lstrip().startswith("<iframe") and frame.rstrip().endswith("</iframe>")
    opening = frame[: frame.index(" srcdoc=")]
    assert 'sandbox="allow-scripts"' in opening, "the frame is not sandboxed to scripts only"
    height = re.search(r'\sheight="(\d+)"', opening)
    assert height and 300 <= int(height.group(1)) <= 1200, opening
    page = srcdoc_of(frame)
    assert page == page_of(explanation), "the srcdoc is not the engine's page"
    assert page.lstrip().lower().startswith("<!doctype html>")
    assert embedded(page) == explanation.to_dict(), "the page does not embed the explanation's JSON"
    record = embedded(page)
    assert np.array_equal(np.array(record["attributions"], dtype=np.float64), explanation.attributions)
    assert ("word_attributions" in record) == (which == "words")


def test_frame_escapes_hostile_text(session: _native.Session) -> None:
    hostile = Explanation(*session.explain('"><script>alert(1)</script> & co', "plain &amp; text"))
    frame = html_of(hostile)
    assert frame.count("<script") == 0, "markup of the page or the text leaked out of the srcdoc"
    assert frame.count('"') == frame[: frame.index(" srcdoc=")].count('"') + 2
    page = srcdoc_of(frame)
    assert page == page_of(hostile)
    assert embedded(page)["text_a"]["text"] == '"><script>alert(1)</script> & co'


@pytest.mark.parametrize("which", ["words", "plain"])
def test_report_renders_the_explanation_in_chromium(
    which: str, expl: Explanation, plain: Explanation, chromium: Path, tmp_path: Path
) -> None:
    explanation = expl if which == "words" else plain
    page = srcdoc_of(html_of(explanation))
    path = tmp_path / "report page.html"
    path.write_text(page, encoding="utf-8")
    dom = dump_dom(chromium, path, "#selftest", tmp_path)
    check_selftest(selftest_of(dom), explanation, scale_of(page))
    rows, cols = explanation.attributions.shape
    assert dom.count('<td class="cell') == rows * cols, "cells in the dumped DOM"


def test_scale_matches_the_plot(expl: Explanation) -> None:
    # plot()'s default RdBu_r is red for positive values: so is the page.
    scale = scale_of(page_of(expl))
    red, blue = scale["red_arm"][-1], scale["blue_arm"][-1]
    assert red[0] > red[2] and blue[2] > blue[0]
    assert scale["red_arm"][0] == scale["blue_arm"][0] == scale["white"]


def strong_pixels(png: Path) -> int:
    """How many pixels of a screenshot are clearly red or blue (heatmap cells, coloured tokens)."""
    import matplotlib.image

    pixels = np.asarray(matplotlib.image.imread(str(png)))[..., :3]
    rgb = np.round(pixels * 255).astype(np.int64)
    return int(np.count_nonzero(np.abs(rgb[..., 0] - rgb[..., 2]) > 60))


def frame_page(frame: str) -> str:
    return f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>notebook</title></head><body>{frame}</body></html>'


def test_frame_loads_in_chromium(expl: Explanation, chromium: Path, tmp_path: Path) -> None:
    frame = html_of(expl)
    path = tmp_path / "notebook.html"
    path.write_text(frame_page(frame), encoding="utf-8")
    dom = dump_dom(chromium, path, "", tmp_path)
    frames = re.findall(r"<iframe\b[^>]*>", dom)
    assert len(frames) == 1, f"not one iframe in the DOM: {dom[:500]}"
    assert 'sandbox="allow-scripts"' in frames[0]
    parsed = re.search(r'\ssrcdoc="([^"]*)"', frames[0])
    assert parsed and html.unescape(parsed.group(1)) == page_of(expl), "the browser read another srcdoc"


def test_frame_draws_the_heatmap_in_chromium(expl: Explanation, chromium: Path, tmp_path: Path) -> None:
    # The page's script must run inside the sandboxed frame: without it there is no heatmap,
    # and the same frame with scripts forbidden shows only the legend's ramp in red and blue.
    counts: Dict[str, int] = {}
    for name, frame in (("scripts", html_of(expl)), ("none", html_of(expl).replace('"allow-scripts"', '""', 1))):
        path = tmp_path / f"{name}.html"
        path.write_text(frame_page(frame), encoding="utf-8")
        shot = tmp_path / f"{name}.png"
        args = [f"--screenshot={shot}", "--window-size=1200,1000", "--virtual-time-budget=5000", path.as_uri()]
        run_chromium(chromium, args, tmp_path / f"profile-{name}")
        assert shot.is_file(), "Chromium wrote no screenshot"
        counts[name] = strong_pixels(shot)
    cells = expl.attributions.size
    assert counts["scripts"] > 5 * counts["none"] and counts["scripts"] > 100 * cells // 4, counts
