"""The explanation of one pair of texts: the attribution matrix and everything reported with it.

An :class:`Explanation` wraps what the engine returned for a pair: the JSON document, kept
verbatim (``to_json()`` is bit for bit what ``simattr explain --json FILE`` writes), and the
token-by-token attribution matrix as a NumPy array. Rows are the tokens of text ``a``, columns
the tokens of text ``b``; the matrix sums to ``attributable`` up to ``completeness_error``.
"""

from __future__ import annotations

import copy
import html
import json
import math
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _native

if TYPE_CHECKING:  # matplotlib stays an optional dependency: imported only inside plot().
    from matplotlib.axes import Axes

__all__ = ["Explanation"]

#: A token (or word) pair and its attribution: ``(token of a, token of b, value)``.
Pair = Tuple[str, str, float]

# The notebook frame's height in pixels: the texts, the toolbar and the column labels above the
# matrix, a matrix row (26 px in the page's CSS) per token of text a, at least the height of the
# scores, settings and strongest pairs beside it, at most what fits a screen (the page scrolls).
_FRAME_BASE_PX = 380
_FRAME_ROW_PX = 26
_FRAME_MIN_PX = 860
_FRAME_MAX_PX = 1100

# plot(): cells are annotated with their values by default when there are at most this many.
_ANNOTATE_MAX_CELLS = 120


def _number(value: Optional[float]) -> float:
    """A JSON number as a float: the JSON writes NaN and infinities as null, read back as NaN."""
    return math.nan if value is None else float(value)


def _matrix(rows: Sequence[Sequence[Optional[float]]], columns: int) -> np.ndarray:
    """A JSON matrix (null for NaN) as a float64 array of shape ``[len(rows), columns]``."""
    values = [[_number(v) for v in row] for row in rows]
    return np.array(values, dtype=np.float64).reshape(len(values), columns)


class Explanation:
    """Why an encoder finds two texts similar: the token-by-token attribution matrix.

    Built by :class:`simattr.Explainer` from what the engine returned; the JSON text is kept
    verbatim and parsed once. ``attributions[i, j]`` is how much token ``i`` of text ``a`` and
    token ``j`` of text ``b`` together contribute to the similarity ``score``.

    In a notebook the explanation displays as the interactive HTML report of
    ``simattr explain --html``; elsewhere its ``repr`` is a one-line summary.
    """

    def __init__(
        self,
        json_text: str,
        attributions: np.ndarray,
        *,
        rank: Optional[int] = None,
        document: Optional[int] = None,
    ) -> None:
        """Wraps the engine's JSON text and its attribution matrix.

        ``rank`` and ``document`` are set for a ranked search: the explanation's place among
        the best documents (1 = best) and the document's index in the list searched.
        Raises ``ValueError`` if the matrix does not have one row per token of ``a`` and one
        column per token of ``b``.
        """
        self._json = json_text
        self._data: Dict[str, Any] = json.loads(json_text)
        self._attributions = attributions
        self._rank = rank
        self._document = document
        self._words: Optional[np.ndarray] = None
        expected = (len(self._data["tokens_a"]), len(self._data["tokens_b"]))
        if tuple(np.shape(attributions)) != expected:
            raise ValueError(
                f"the attribution matrix has shape {np.shape(attributions)}, "
                f"but the texts have {expected[0]} and {expected[1]} tokens"
            )

    # --- The matrices and their labels. ---

    @property
    def attributions(self) -> np.ndarray:
        """The token-by-token attribution matrix, float64 ``[len(tokens_a), len(tokens_b)]``.

        The array the engine returned (not a copy): row ``i`` is token ``i`` of ``a``,
        column ``j`` token ``j`` of ``b``.
        """
        return self._attributions

    @property
    def tokens_a(self) -> List[str]:
        """Text a's tokens, special tokens included: the rows of ``attributions``."""
        return list(self._data["tokens_a"])

    @property
    def tokens_b(self) -> List[str]:
        """Text b's tokens, special tokens included: the columns of ``attributions``."""
        return list(self._data["tokens_b"])

    @property
    def words_a(self) -> Optional[List[str]]:
        """Text a's words (the rows of ``word_attributions``), or None without the word view."""
        words = self._data.get("words_a")
        return None if words is None else list(words)

    @property
    def words_b(self) -> Optional[List[str]]:
        """Text b's words (the columns of ``word_attributions``), or None without the word view."""
        words = self._data.get("words_b")
        return None if words is None else list(words)

    @property
    def word_attributions(self) -> Optional[np.ndarray]:
        """The word-by-word matrix, float64 ``[len(words_a), len(words_b)]``, or None.

        Each entry merges its word pair's token pairs as ``word_merge`` says (``sum`` keeps
        the total of the token matrix). None when the explanation has no word view.
        """
        rows = self._data.get("word_attributions")
        if rows is None:
            return None
        if self._words is None:
            self._words = _matrix(rows, len(self._data["words_b"]))
        return self._words

    @property
    def word_merge(self) -> Optional[str]:
        """How a word pair's token pairs were merged (``sum`` or ``mean``), or None."""
        return self._data.get("word_merge")

    @property
    def text_a(self) -> str:
        """Text a as given (whole, even where it was truncated)."""
        return str(self._data["text_a"]["text"])

    @property
    def text_b(self) -> str:
        """Text b as given (whole, even where it was truncated)."""
        return str(self._data["text_b"]["text"])

    @property
    def truncated_from(self) -> Tuple[Optional[int], Optional[int]]:
        """For texts a and b, the token count before the cut at ``max_seq_length``, or None
        for a text that was not cut."""
        return (self._data["text_a"]["truncated_from"], self._data["text_b"]["truncated_from"])

    # --- The score and the completeness bookkeeping. ---

    @property
    def score(self) -> float:
        """The similarity of the two texts' embeddings (the ``similarity`` explained)."""
        return _number(self._data["score"])

    @property
    def attribution_sum(self) -> float:
        """The sum of all entries of the attribution matrix."""
        return _number(self._data["attribution_sum"])

    @property
    def reference_terms(self) -> Dict[str, float]:
        """The terms by which the sum differs from the score: ``ref_a__b``, ``a__ref_b``,
        ``ref_a__ref_b`` (all 0 for an exact model)."""
        return {key: _number(v) for key, v in self._data["reference_terms"].items()}

    @property
    def attributable(self) -> float:
        """``score − ref_a__b − a__ref_b + ref_a__ref_b``: what the sum converges to."""
        return _number(self._data["attributable"])

    @property
    def completeness_error(self) -> float:
        """``|attribution_sum − attributable|`` (NaN where a value was not finite)."""
        return _number(self._data["completeness_error"])

    @property
    def completeness(self) -> Dict[str, Any]:
        """The completeness report: how far the matrix is from summing to the score.

        Keys: ``score``, ``attribution_sum``, ``reference_terms``, ``attributable``,
        ``completeness_error``, and per text the identity errors ``identity_error_a``,
        ``identity_error_b`` and ``relative_identity_error_a``, ``relative_identity_error_b``
        (how far each text's attributions are from summing to its embedding difference).
        """
        report: Dict[str, Any] = {
            "score": self.score,
            "attribution_sum": self.attribution_sum,
            "reference_terms": self.reference_terms,
            "attributable": self.attributable,
            "completeness_error": self.completeness_error,
        }
        for side in ("a", "b"):
            text = self._data[f"text_{side}"]
            report[f"identity_error_{side}"] = _number(text["identity_error"])
            report[f"relative_identity_error_{side}"] = _number(text["relative_identity_error"])
        return report

    # --- The settings and where the explanation came from. ---

    @property
    def similarity(self) -> str:
        """The similarity whose score is explained: ``cos``, ``dot`` or ``cos-exact``."""
        return str(self._data["similarity"])

    @property
    def layer(self) -> int:
        """The layer whose input is attributed (0 = the embedding output)."""
        return int(self._data["layer"])

    @property
    def steps(self) -> int:
        """Model evaluations per text (the quadrature's nodes)."""
        return int(self._data["steps"])

    @property
    def method(self) -> str:
        """``integrated-jacobians``, or ``decomposition`` (the baseline)."""
        return str(self._data["method"])

    @property
    def provenance(self) -> Dict[str, Any]:
        """Where the explanation came from: the weights, the engine and the settings (a copy)."""
        return copy.deepcopy(self._data["provenance"])

    @property
    def rank(self) -> Optional[int]:
        """For a ranked search, the place among the best documents (1 = best); else None."""
        return self._rank

    @property
    def document(self) -> Optional[int]:
        """For a ranked search, the document's index in the list searched; else None."""
        return self._document

    # --- Output. ---

    def to_json(self) -> str:
        """The JSON text exactly as the engine gave it: what ``simattr explain --json`` writes."""
        return self._json

    def to_dict(self) -> Dict[str, Any]:
        """The JSON document as a fresh dict (changing it changes nothing here)."""
        return json.loads(self._json)

    def _view(self, words: bool) -> Tuple[List[str], List[str], np.ndarray]:
        """The row labels, column labels and matrix of the token view, or of the word view."""
        if not words:
            return self.tokens_a, self.tokens_b, self._attributions
        matrix = self.word_attributions
        if matrix is None:
            raise ValueError("this explanation has no word view: explain with words=True")
        return self.words_a or [], self.words_b or [], matrix

    def top_pairs(self, k: Optional[int] = 10, words: bool = False) -> List[Pair]:
        """The ``k`` strongest pairs as ``(token of a, token of b, value)``, by |value| descending.

        Ties keep row-major order (as the HTML report lists them); entries that are not finite
        are left out. ``k=None`` lists every pair; ``words=True`` ranks word pairs instead.
        """
        rows, columns, matrix = self._view(words)
        values = np.asarray(matrix, dtype=np.float64)
        flat = values.ravel()
        finite = np.flatnonzero(np.isfinite(flat))
        order = finite[np.argsort(-np.abs(flat[finite]), kind="stable")]
        if k is not None:
            order = order[: max(k, 0)]
        width = values.shape[1]
        return [(rows[n // width], columns[n % width], float(flat[n])) for n in order]

    def plot(
        self,
        ax: Optional["Axes"] = None,
        *,
        words: bool = False,
        cmap: str = "RdBu_r",
        annotate: Optional[bool] = None,
        title: Optional[str] = None,
    ) -> "Axes":
        """Draws the attribution matrix as a heatmap and returns the matplotlib Axes.

        Rows are the tokens of text a, columns those of text b (``words=True``: the words).
        The colour scale is symmetric around 0 (white), with a colour bar. ``annotate``
        writes each cell's value (default: when there are at most 120 cells); ``title``
        defaults to the score and the sum, ``""`` for none. Draws into ``ax`` if given, else
        into a new figure sized to the matrix. Needs matplotlib (``pip install matplotlib``).
        """
        plt = _pyplot()
        rows, columns, matrix = self._view(words)
        values = np.ma.masked_invalid(np.asarray(matrix, dtype=np.float64))
        if ax is None:
            size = (max(4.0, 2.0 + 0.55 * len(columns)), max(3.0, 1.5 + 0.35 * len(rows)))
            _, ax = plt.subplots(figsize=size, layout="constrained")
        limit = _symmetric_limit(values)
        image = ax.imshow(values, cmap=cmap, vmin=-limit, vmax=limit)
        ax.set_xticks(range(len(columns)), labels=columns, rotation=60, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(len(rows)), labels=rows)
        ax.set_xlabel("text b")
        ax.set_ylabel("text a")
        ax.figure.colorbar(image, ax=ax, label="attribution", fraction=0.05, pad=0.03)
        if annotate is None:
            annotate = values.size <= _ANNOTATE_MAX_CELLS
        if annotate:
            _annotate(ax, values, limit)
        ax.set_title(self._default_title() if title is None else title)
        return ax

    def _default_title(self) -> str:
        return f"{self.similarity} {self.score:.4f}, sum of attributions {self.attribution_sum:.4f}"

    def _repr_html_(self) -> str:
        """The interactive HTML report in a sandboxed frame (Jupyter's rich display).

        The page is the one ``simattr explain --html`` writes (self-contained, scripts only
        inside the frame), passed as the frame's ``srcdoc``.
        """
        title = _native.pair_title(self.text_a, self.text_b)
        page = _native.report_html(self.to_json(), title)
        rows = len(self._data["tokens_a"])
        height = min(_FRAME_MAX_PX, max(_FRAME_MIN_PX, _FRAME_BASE_PX + _FRAME_ROW_PX * rows))
        return (
            f'<iframe class="simattr-report" title="{html.escape(title, quote=True)}" '
            f'sandbox="allow-scripts" width="100%" height="{height}" '
            f'style="width: 100%; height: {height}px; border: 1px solid #ddd;" '
            f'srcdoc="{html.escape(page, quote=True)}"></iframe>'
        )

    def __repr__(self) -> str:
        """A one-line summary: the score, the sum of the attributions and the strongest pair."""
        parts = [
            f"{self.similarity}={self.score:+.4f}",
            f"sum={self.attribution_sum:+.4f}",
            f"tokens={len(self._data['tokens_a'])}x{len(self._data['tokens_b'])}",
        ]
        strongest = self.top_pairs(1)
        if strongest:
            a, b, value = strongest[0]
            parts.append(f"strongest={a!r}<->{b!r} {value:+.4f}")
        if self._rank is not None:
            parts.append(f"rank={self._rank}")
        if self._document is not None:
            parts.append(f"document={self._document}")
        return f"<Explanation {' '.join(parts)}>"


def _pyplot() -> Any:
    """matplotlib.pyplot, or an ImportError saying how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "Explanation.plot() needs matplotlib, which is not installed: "
            "pip install matplotlib (or pip install 'simattr[plot]')"
        ) from error
    return plt


def _symmetric_limit(values: np.ma.MaskedArray) -> float:
    """The half-range of a colour scale symmetric around 0: the largest |value| (1 if none)."""
    finite = np.abs(values.compressed())
    limit = float(finite.max()) if finite.size else 0.0
    return limit if limit > 0.0 else 1.0


def _annotate(ax: "Axes", values: np.ma.MaskedArray, limit: float) -> None:
    """Writes each cell's value into it (two significant digits of the largest), white on the
    dark ends of the scale."""
    decimals = max(0, 1 - math.floor(math.log10(limit)))
    for (i, j), value in np.ndenumerate(values.filled(np.nan)):
        if not math.isfinite(value):
            continue
        colour = "white" if abs(value) > 0.6 * limit else "black"
        ax.text(j, i, f"{value:+.{decimals}f}", ha="center", va="center", fontsize=6, color=colour)
