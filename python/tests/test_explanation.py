"""Explanation against the engine's own output on the tiny BERT model: the matrix is the JSON's,
the JSON is what the CLI writes, the word view sums like the tokens, the strongest pairs are
ordered, the heatmap is labelled, and the progress helper follows the engine's reports."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, List, Tuple

import matplotlib
import numpy as np
import pytest

from simattr import _native
from simattr._progress import progress_bar
from simattr.explanation import _ANNOTATE_MAX_CELLS, Explanation

from conftest import STEPS

matplotlib.use("Agg")

#: Texts the tiny vocabulary splits into several tokens per word, so the word view differs.
A = "Guitars, unbelievably loud."
B = "A quiet piano"

Explained = Tuple[str, np.ndarray]


@pytest.fixture(scope="module")
def explained(session: _native.Session) -> Explained:
    """What the engine returns for (A, B): the JSON text and the matrix."""
    return session.explain(A, B)


@pytest.fixture(scope="module")
def expl(explained: Explained) -> Explanation:
    """The explanation of (A, B), with the word view."""
    return Explanation(*explained)


@pytest.fixture(scope="module")
def plain(plain_session: _native.Session) -> Explanation:
    """The explanation of (A, B) without the word view."""
    return Explanation(*plain_session.explain(A, B))


def close(x: float, y: float, rel: float = 1e-12) -> bool:
    """|x − y| within `rel` of the larger magnitude (or of 1e-300 near zero)."""
    return abs(x - y) <= rel * max(abs(x), abs(y), 1e-300)


# --- The matrix and the fields are the JSON's. ---


def test_attributions_are_the_json_matrix(explained: Explained, expl: Explanation) -> None:
    text, matrix = explained
    data = json.loads(text)
    assert expl.attributions is matrix, "the Explanation copied the engine's array"
    assert matrix.dtype == np.float64
    assert matrix.shape == (len(data["tokens_a"]), len(data["tokens_b"]))
    assert matrix.shape[0] > 2 and matrix.shape[1] > 2
    assert np.array_equal(matrix, np.array(data["attributions"], dtype=np.float64))
    assert np.isfinite(matrix).all()


def test_fields_follow_the_json(explained: Explained, expl: Explanation) -> None:
    data = json.loads(explained[0])
    assert expl.tokens_a == data["tokens_a"] and expl.tokens_b == data["tokens_b"]
    assert (expl.text_a, expl.text_b) == (A, B)
    assert expl.score == data["score"]
    assert expl.attribution_sum == data["attribution_sum"]
    assert expl.reference_terms == data["reference_terms"]
    assert expl.attributable == data["attributable"]
    assert expl.completeness_error == data["completeness_error"]
    # The default layer is the model's last: tiny-bert has three (0, 1, 2).
    assert (expl.similarity, expl.layer, expl.steps, expl.method) == ("cos", 2, STEPS, "integrated-jacobians")
    assert (expl.similarity, expl.layer, expl.steps, expl.method) == (
        data["similarity"],
        data["layer"],
        data["steps"],
        data["method"],
    )
    assert expl.provenance == data["provenance"]
    assert (expl.rank, expl.document) == (None, None)


def test_completeness_adds_up(expl: Explanation) -> None:
    report = expl.completeness
    terms = report["reference_terms"]
    assert set(terms) == {"ref_a__b", "a__ref_b", "ref_a__ref_b"}
    attributable = report["score"] - terms["ref_a__b"] - terms["a__ref_b"] + terms["ref_a__ref_b"]
    assert close(report["attributable"], attributable, 1e-12)
    assert close(report["attribution_sum"], float(expl.attributions.sum()), 1e-12)
    assert close(report["completeness_error"], abs(report["attribution_sum"] - report["attributable"]), 1e-9)
    data = expl.to_dict()
    for side in ("a", "b"):
        assert report[f"identity_error_{side}"] == data[f"text_{side}"]["identity_error"]
        assert report[f"relative_identity_error_{side}"] == data[f"text_{side}"]["relative_identity_error"]
        assert report[f"identity_error_{side}"] >= 0


def test_mismatched_matrix_is_refused(explained: Explained) -> None:
    text, matrix = explained
    with pytest.raises(ValueError, match="shape"):
        Explanation(text, matrix[:, :-1])


def test_rank_and_document_are_kept(explained: Explained) -> None:
    ranked = Explanation(*explained, rank=2, document=7)
    assert (ranked.rank, ranked.document) == (2, 7)
    assert "rank=2" in repr(ranked) and "document=7" in repr(ranked)


# --- The JSON text is kept verbatim and is the CLI's. ---


def test_to_json_is_verbatim(explained: Explained, expl: Explanation) -> None:
    text, matrix = explained
    assert expl.to_json() == text
    again = Explanation(expl.to_json(), matrix)
    assert again.to_json() == text
    assert expl.to_dict() == json.loads(text)
    changed = expl.to_dict()
    changed["score"] = "changed"
    changed["provenance"]["model"] = "changed"
    assert expl.to_dict() == json.loads(text), "to_dict handed out the Explanation's own dict"
    provenance = expl.provenance
    provenance["model"] = "changed"
    assert expl.provenance == json.loads(text)["provenance"]


def test_json_is_what_the_cli_writes(
    simattr_cli: Path, tiny_bert: Path, expl: Explanation, plain: Explanation, tmp_path: Path
) -> None:
    for words, explanation in ((True, expl), (False, plain)):
        out = tmp_path / f"pair-{words}.json"
        args = [str(simattr_cli), "explain", "--threads", "1", "--model", str(tiny_bert)]
        args += ["--steps", str(STEPS), "--json", str(out)] + (["--words"] if words else []) + [A, B]
        run = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        written = out.read_text(encoding="utf-8")
        assert explanation.to_json() == written, f"words={words}: the JSON text differs from the CLI's --json"


# --- The word view. ---


def test_word_view_sums_like_the_tokens(expl: Explanation) -> None:
    words = expl.word_attributions
    assert words is not None and expl.words_a is not None and expl.words_b is not None
    assert expl.word_merge == "sum"
    assert words.dtype == np.float64
    assert words.shape == (len(expl.words_a), len(expl.words_b))
    assert len(expl.words_a) < len(expl.tokens_a), "the text should split into fewer words than tokens"
    assert np.array_equal(words, np.array(expl.to_dict()["word_attributions"], dtype=np.float64))
    assert close(float(words.sum()), float(expl.attributions.sum()), 1e-12)
    assert "unbelievably" in expl.words_a


def test_without_words(plain: Explanation, expl: Explanation) -> None:
    assert (plain.words_a, plain.words_b, plain.word_attributions, plain.word_merge) == (None, None, None, None)
    assert "words_a" not in plain.to_dict()
    assert np.array_equal(plain.attributions, expl.attributions), "the word view changed the token matrix"
    with pytest.raises(ValueError, match="word"):
        plain.top_pairs(words=True)


# --- The strongest pairs. ---


def brute_top(labels_a: List[str], labels_b: List[str], m: np.ndarray) -> List[Tuple[str, str, float]]:
    """Every finite pair by |value| descending, row-major on ties, by a plain sort."""
    cells = [
        (labels_a[i], labels_b[j], float(m[i, j]))
        for i in range(m.shape[0])
        for j in range(m.shape[1])
        if math.isfinite(m[i, j])
    ]
    return sorted(cells, key=lambda cell: -abs(cell[2]))


def test_top_pairs_are_ordered(expl: Explanation) -> None:
    m = expl.attributions
    top = expl.top_pairs(5)
    assert len(top) == 5
    magnitudes = [abs(v) for _, _, v in top]
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert magnitudes[0] == np.abs(m).max()
    for a, b, v in top:
        hits = [(i, j) for i in range(m.shape[0]) for j in range(m.shape[1]) if m[i, j] == v]
        assert any(expl.tokens_a[i] == a and expl.tokens_b[j] == b for i, j in hits), (a, b, v)
    everything = expl.top_pairs(None)
    assert everything == brute_top(expl.tokens_a, expl.tokens_b, m)
    assert len(everything) == m.size
    assert expl.top_pairs(m.size + 10) == everything
    assert expl.top_pairs(0) == []
    assert expl.top_pairs() == everything[:10]


def test_top_word_pairs(expl: Explanation) -> None:
    words = expl.word_attributions
    assert words is not None and expl.words_a is not None and expl.words_b is not None
    assert expl.top_pairs(None, words=True) == brute_top(expl.words_a, expl.words_b, words)


def test_top_pairs_leave_out_nan(explained: Explained) -> None:
    text, matrix = explained
    holed = matrix.copy()
    holed[0, 0] = np.nan
    listed = Explanation(text, holed).top_pairs(None)
    assert len(listed) == matrix.size - 1
    assert all(math.isfinite(v) for _, _, v in listed)


# --- The heatmap. ---


def labels(ticks: List[Any]) -> List[str]:
    return [t.get_text() for t in ticks]


def test_plot_labels_and_scale(expl: Explanation) -> None:
    import matplotlib.pyplot as plt

    ax = expl.plot()
    try:
        assert labels(ax.get_yticklabels()) == expl.tokens_a
        assert labels(ax.get_xticklabels()) == expl.tokens_b
        image = ax.get_images()[0]
        drawn = image.get_array()
        assert drawn is not None and np.array_equal(np.ma.getdata(drawn), expl.attributions)
        low, high = image.get_clim()
        assert high == -low == float(np.abs(expl.attributions).max())
        assert len(ax.figure.axes) == 2, "no colour bar"
        assert f"{expl.score:.4f}" in ax.get_title()
        annotated = expl.attributions.size <= _ANNOTATE_MAX_CELLS
        assert len(ax.texts) == (expl.attributions.size if annotated else 0)
        again = expl.plot(annotate=True)
        assert len(again.texts) == expl.attributions.size
    finally:
        plt.close("all")


def test_plot_words_into_given_axes(expl: Explanation) -> None:
    import matplotlib.pyplot as plt

    figure, given = plt.subplots()
    try:
        ax = expl.plot(given, words=True, annotate=False, title="words", cmap="coolwarm")
        assert ax is given
        assert labels(ax.get_yticklabels()) == expl.words_a
        assert labels(ax.get_xticklabels()) == expl.words_b
        drawn = ax.get_images()[0].get_array()
        assert drawn is not None and expl.word_attributions is not None
        assert np.array_equal(np.ma.getdata(drawn), expl.word_attributions)
        assert ax.get_images()[0].get_cmap().name == "coolwarm"
        assert len(ax.texts) == 0 and ax.get_title() == "words"
    finally:
        plt.close(figure)


def test_plot_without_words_refuses_the_word_view(plain: Explanation) -> None:
    with pytest.raises(ValueError, match="word"):
        plain.plot(words=True)


def test_plot_says_how_to_get_matplotlib(expl: Explanation, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        expl.plot()


# --- The text summary. ---


def test_repr_has_score_sum_and_strongest_pair(expl: Explanation) -> None:
    text = repr(expl)
    assert f"{expl.score:.4f}" in text
    assert f"{expl.attribution_sum:.4f}" in text
    a, b, value = expl.top_pairs(1)[0]
    assert repr(a) in text and repr(b) in text and f"{value:+.4f}" in text
    assert "\n" not in text


# --- The progress helper, fed by the engine. ---


def test_progress_reports_reach_the_total(session: _native.Session) -> None:
    calls: List[Tuple[int, int]] = []
    session.explain("Fresh words for progress.", "Nothing cached here", progress=lambda d, t: calls.append((d, t)))
    assert calls, "the engine never reported progress"
    done = [d for d, _ in calls]
    assert done == sorted(done), f"progress went backwards: {calls}"
    assert calls[-1][0] == calls[-1][1] > 0, f"the last report is not complete: {calls[-1]}"


def test_progress_bar_follows_the_engine(session: _native.Session, capsys: pytest.CaptureFixture[str]) -> None:
    with progress_bar(None, "explaining", True) as bar:
        assert bar.active
        session.explain("A bar for this pair.", "Another pair entirely", progress=bar.callback)
        inner: Any = bar._bar
        assert inner.n == inner.total > 0
    err = capsys.readouterr().err
    assert "explaining" in err and "100%" in err, err


def test_progress_bar_disabled_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_bar(10, "hidden", False) as bar:
        assert not bar.active
        bar.update(3)
        bar.set_total(20)
        bar.callback(5, 20)
    assert capsys.readouterr().err == ""


def test_progress_bar_counts(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_bar(4, "counting", True) as bar:
        bar.update(1)
        bar.callback(3, 6)
        inner: Any = bar._bar
        assert (inner.n, inner.total) == (3, 6)
        bar.update(3)
        assert inner.n == 6
    assert "counting" in capsys.readouterr().err


# --- The explainer hands out these explanations. ---


def test_explainer_gives_the_sessions_explanation(explainer: Any, expl: Explanation) -> None:
    from simattr import Explainer

    assert isinstance(explainer, Explainer)
    given = explainer.explain(A, B)
    assert isinstance(given, Explanation)
    assert given.to_json() == expl.to_json()
    assert np.array_equal(given.attributions, expl.attributions)
