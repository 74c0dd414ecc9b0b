"""The user-facing explainer: one model loaded on one backend, with fixed attribution settings."""

from __future__ import annotations

import json
import warnings
from typing import Any, Iterable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._progress import progress_bar
from .explanation import Explanation

#: A pair of texts: a ``(a, b)`` tuple or a mapping with keys ``"a"`` and ``"b"``.
Pair = Union[Tuple[str, str], Mapping[str, str]]


class Explainer:
    """Explains why a sentence-transformers model finds two texts similar.

    The model loads once; every call reuses it, and each distinct text's attribution is computed
    once and kept (in memory up to ``cache_memory``, on disk in ``cache_dir`` if given), so a
    text met again costs nothing.

    Args:
        model: a sentence-transformers folder, or the name of a model fetched into simattr's
            cache with ``scripts/fetch_model.sh`` (``all-MiniLM-L6-v2``, ``all-mpnet-base-v2``).
            Default: all-MiniLM-L6-v2.
        backend: ``cpu`` (fast, multi-threaded), ``cpu-ref`` (the plain reference), ``wgpu``
            (WGSL shaders on a GPU), ``cuda`` (NVIDIA GPU) or ``cuda-emu``.
        layer: the layer whose input is attributed (0: the embedding output). Default: the
            model's last layer, as `simattr explain` (docs/method.md, "Choosing the layer").
        steps: model evaluations per text along the integration path.
        rule: quadrature rule: ``riemann-right`` (as xsbert), ``trapezoid``, ``gauss-legendre``
            or ``gauss-legendre-adaptive``.
        method: ``integrated-jacobians`` or ``decomposition`` (xsbert's baseline).
        similarity: ``cos`` (as xsbert), ``dot`` or ``cos-exact``.
        mode: ``forward``, ``reverse`` or ``auto`` (per text, the cheaper).
        words: also merge the sub-word tokens into words (``Explanation.word_attributions``).
        word_merge: how token pairs merge into a word pair: ``sum`` (completeness holds) or
            ``mean``.
        truncate: cut texts over the model's ``max_seq_length`` as sentence-transformers does;
            with ``False`` such a text raises ``ValueError``.
        threads: worker threads (default: all cores). ``device``, ``precision``, ``primal``,
            ``max_memory``: as the command line's ``--device``, ``--precision``, ``--primal``,
            ``--max-memory``.
        cache_dir: keep each text's attribution on disk here, across sessions.
        cache_memory: memory for attributions kept during the session, e.g. ``"512M"``.
        prompt_a, prompt_b: the prompts put before text a (and a query) and text b (and a
            document): a name from the model's ``config_sentence_transformers.json`` or the
            prompt's text; its tokens are attributed with the text's.
        truncate_dim: attribute the first K dimensions of the embedding (Matryoshka models).
        progress: show progress bars on long work (with tqdm, when it is installed).

    Bad arguments raise ``ValueError``, a missing model ``FileNotFoundError``, other engine
    failures :class:`simattr.SimattrError`; each carries the engine's message.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        backend: str = "cpu",
        layer: Optional[int] = None,
        steps: int = 50,
        rule: str = "riemann-right",
        method: str = "integrated-jacobians",
        similarity: str = "cos",
        mode: str = "auto",
        words: bool = True,
        word_merge: str = "sum",
        truncate: bool = True,
        threads: int | None = None,
        device: int | None = None,
        precision: str | None = None,
        primal: str | None = None,
        max_memory: str | None = None,
        cache_dir: str | None = None,
        cache_memory: str = "1G",
        prompt_a: str | None = None,
        prompt_b: str | None = None,
        truncate_dim: int | None = None,
        progress: bool = True,
    ) -> None:
        self._session = _native.Session(
            None if model is None else str(model),
            backend=backend,
            device=device,
            precision=precision,
            primal=primal,
            threads=threads,
            max_memory=max_memory,
            layer=layer,
            steps=steps,
            rule=rule,
            method=method,
            similarity=similarity,
            mode=mode,
            words=words,
            word_merge=word_merge,
            truncate=truncate,
            cache_dir=None if cache_dir is None else str(cache_dir),
            cache_memory=cache_memory,
            prompt_a=prompt_a,
            prompt_b=prompt_b,
            truncate_dim=truncate_dim,
        )
        self.progress = progress

    @property
    def model_path(self) -> str:
        """The model folder the explainer loaded."""
        return self._session.model_path

    @property
    def provenance(self) -> dict[str, Any]:
        """The weights' sha256, the backend, the precisions and the attribution settings."""
        return json.loads(self._session.provenance)

    @property
    def hidden_size(self) -> int:
        """The width of the model's embeddings."""
        return self._session.hidden_size

    @property
    def max_seq_length(self) -> int:
        """Texts longer than this many tokens are cut (or refused, with ``truncate=False``)."""
        return self._session.max_seq_length

    def cache_stats(self) -> dict[str, int]:
        """How the texts' attributions were found so far: ``computed``, ``memory_hits``,
        ``disk_hits``, ``disk_unreadable``."""
        return self._session.cache_stats()

    def explain(self, a: str, b: str) -> Explanation:
        """Explains the similarity of ``a`` and ``b``: the same numbers (and JSON) as
        ``simattr explain --json``. The GIL is released while the engine works."""
        _check_text(a, "a")
        _check_text(b, "b")
        with progress_bar(None, "integrating", self.progress) as bar:
            text, matrix = self._session.explain(a, b, bar.callback)
        return _warn_if_truncated(Explanation(text, matrix))

    def explain_batch(self, pairs: Iterable[Pair]) -> list[Explanation]:
        """Explains many pairs, each distinct text's attribution computed once.

        ``pairs``: ``(a, b)`` tuples, mappings with ``"a"`` and ``"b"``, or a pandas
        DataFrame with columns ``a`` and ``b``. A pair that fails raises, naming its place."""
        if hasattr(pairs, "columns") and hasattr(pairs, "to_dict"):
            # A DataFrame iterates over its column names; its rows are what is meant.
            pairs = pairs.to_dict("records")
        items = [_as_pair(pair, n) for n, pair in enumerate(pairs)]
        explanations = []
        with progress_bar(len(items), "explaining", self.progress and len(items) > 1) as bar:
            for n, (a, b) in enumerate(items):
                try:
                    text, matrix = self._session.explain(a, b)
                except Exception as error:
                    raise type(error)(f"pair {n}: {error}") from error
                explanations.append(_warn_if_truncated(Explanation(text, matrix)))
                bar.update(1)
        return explanations

    def rank(self, query: str, documents: Sequence[str]) -> list[tuple[int, float]]:
        """``(document index, score)`` of every document against ``query``, best first, by the
        score :meth:`explain` reports (embeddings only, no attribution)."""
        _check_text(query, "query")
        return self._session.rank(query, [_check_text(d, f"document {n}") for n, d in enumerate(documents)])

    def rank_and_explain(self, query: str, documents: Sequence[str], top_k: int = 10) -> list[Explanation]:
        """Ranks ``documents`` against ``query`` and explains the best ``top_k``, best first;
        each explanation's ``rank`` (from 1) and ``document`` (index into ``documents``) say
        where it came from. The query's attribution is computed once."""
        if top_k < 0:
            raise ValueError(f"invalid argument top_k: {top_k} is negative")
        documents = list(documents)
        best = self.rank(query, documents)[:top_k]
        explanations = []
        with progress_bar(len(best), "explaining", self.progress and len(best) > 1) as bar:
            for rank, (document, _score) in enumerate(best, start=1):
                text, matrix = self._session.explain(query, documents[document])
                explanations.append(_warn_if_truncated(Explanation(text, matrix, rank=rank, document=document)))
                bar.update(1)
        return explanations

    def embed(self, texts: Sequence[str] | str, *, normalize: bool = True, batch_size: int = 256) -> np.ndarray:
        """Sentence embeddings ``[len(texts), hidden_size]`` (float64), as sentence-transformers'
        ``encode`` computes them; ``normalize``: apply the model's Normalize module if it has
        one. A single string gives one row."""
        if isinstance(texts, str):
            texts = [texts]
        texts = [_check_text(t, f"text {n}") for n, t in enumerate(texts)]
        if batch_size < 1:
            raise ValueError(f"invalid argument batch_size: {batch_size} is less than 1")
        if not texts:
            return np.zeros((0, self.hidden_size))
        chunks = []
        with progress_bar(len(texts), "embedding", self.progress and len(texts) > batch_size) as bar:
            for start in range(0, len(texts), batch_size):
                chunk = texts[start : start + batch_size]
                chunks.append(self._session.embed(chunk, normalize))
                bar.update(len(chunk))
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def __repr__(self) -> str:
        p = self.provenance
        return (
            f"Explainer(model={self.model_path!r}, backend={p['backend']!r}, layer={p.get('layer')}, "
            f"steps={p.get('steps')}, rule={p.get('rule')!r}, similarity={p.get('similarity')!r})"
        )


def _warn_if_truncated(explanation: Explanation) -> Explanation:
    """As ``simattr explain`` warns on stderr: a text cut at ``max_seq_length`` is explained
    only up to the cut (``truncate=False`` refuses such texts instead)."""
    for name, cut_from in zip(("a", "b"), explanation.truncated_from):
        if cut_from is not None:
            limit = explanation.provenance["max_seq_length"]
            warnings.warn(f"text {name} has {cut_from} tokens; truncated to max_seq_length {limit}", stacklevel=3)
    return explanation


def _check_text(text: Any, name: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, not {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"{name} is empty")
    return text


def _as_pair(pair: Pair, n: int) -> tuple[str, str]:
    if isinstance(pair, Mapping):
        if "a" not in pair or "b" not in pair:
            raise ValueError(f"pair {n}: a mapping needs keys 'a' and 'b' (has {sorted(pair)})")
        a, b = pair["a"], pair["b"]
    else:
        try:
            a, b = pair
        except (TypeError, ValueError):
            raise ValueError(f"pair {n}: expected (a, b) or {{'a': ..., 'b': ...}}, got {pair!r:.80}") from None
    return _check_text(a, f"pair {n}: a"), _check_text(b, f"pair {n}: b")
