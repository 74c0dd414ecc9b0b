"""Type stubs of ``simattr._native``, the Rust engine (PyO3).

A thin layer over the engine: Python strings and NumPy arrays in and out, the GIL released
while the engine computes. Engine errors raise :class:`SimattrError`, bad arguments
``ValueError`` and missing files ``FileNotFoundError``, each carrying the engine's message.
"""

from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import numpy.typing as npt

__version__: str

#: One pair-file item: ``(line, id, a, b, error)``; ``error`` is not None (and ``a``, ``b``
#: are None) for a bad line.
PairItem = Tuple[int, str, Optional[str], Optional[str], Optional[str]]

class SimattrError(Exception):
    """An error of the simattr engine (a model it cannot load, a failed backend, …)."""

def resolve_model(model: Optional[str] = None) -> str:
    """The folder of ``model``: a folder path, or the name of a model in the cache
    (``~/.cache/simattr/models`` or ``$SIMATTR_CACHE``); None is all-MiniLM-L6-v2.
    Raises ``FileNotFoundError`` when there is no such model."""

def read_pairs(path: str) -> List[PairItem]:
    """The pairs of a ``.jsonl``, ``.ndjson``, ``.csv`` or ``.tsv`` file exactly as
    ``simattr batch`` reads them: ``(line, id, a, b, error)``, ``error`` set for a bad line."""

def report_html(explain_json: str, title: str) -> str:
    """The self-contained interactive HTML page ``simattr explain --html`` writes, for an
    explain JSON document; ``title`` is plain text. ``ValueError`` if the text is not JSON."""

def pair_title(a: str, b: str) -> str:
    """The title ``simattr explain --html`` gives the page of the pair ``a``, ``b``."""

class Session:
    """A model loaded on a backend, with its attribution settings and its per-text cache.

    The keyword arguments are the CLI's options: ``backend`` (``cpu``, ``cpu-ref``,
    ``wgpu``, ``cuda``, ``cuda-emu``), ``device``, ``precision`` (``f32``, ``f64``, ``f16``,
    ``bf16``), ``primal`` (``f64``, ``f32``), ``threads``, ``max_memory`` (``"2G"``, …),
    ``layer``, ``steps``, ``rule``, ``method`` (``integrated-jacobians``, ``decomposition``),
    ``similarity`` (``cos``, ``dot``, ``cos-exact``), ``mode`` (``forward``, ``reverse``,
    ``auto``), ``words`` (add the word view, merged by ``word_merge``: ``sum`` or ``mean``),
    ``truncate`` (cut texts longer than the model's ``max_seq_length`` instead of failing),
    ``cache_dir`` (a disk cache of the texts' attributions) and ``cache_memory`` (the memory
    cache's size).
    """

    def __init__(
        self,
        model: Optional[str] = None,
        *,
        backend: str = "cpu",
        device: Optional[int] = None,
        precision: Optional[str] = None,
        primal: Optional[str] = None,
        threads: Optional[int] = None,
        max_memory: Optional[str] = None,
        layer: int = 0,
        steps: int = 50,
        rule: str = "riemann-right",
        method: str = "integrated-jacobians",
        similarity: str = "cos",
        mode: str = "auto",
        words: bool = True,
        word_merge: str = "sum",
        truncate: bool = True,
        cache_dir: Optional[str] = None,
        cache_memory: str = "1G",
    ) -> None: ...
    def explain(
        self,
        a: str,
        b: str,
        progress: Optional[Callable[[int, int], None]] = None,
    ) -> Tuple[str, npt.NDArray[np.float64]]:
        """``(json, attributions)``: the JSON text ``simattr explain --json FILE`` writes for
        the pair, and the attribution matrix, float64 ``[len(tokens_a), len(tokens_b)]``.
        ``progress(done, total)`` (integration steps) is called now and then, with the GIL."""
    def batch_records(self, items: List[PairItem]) -> List[str]:
        """For each ``(line, id, a, b, error)`` item, the JSON line (without its newline)
        ``simattr batch`` writes for it."""
    def embed(self, texts: List[str], normalize: bool = True) -> npt.NDArray[np.float64]:
        """Sentence embeddings, float64 ``[len(texts), hidden_size]``; ``normalize`` applies
        the model's Normalize module if it lists one (as sentence-transformers' ``encode``)."""
    def rank(self, query: str, documents: List[str]) -> List[Tuple[int, float]]:
        """``(document index, score)`` for every document, best first (ties keep their order)."""
    def cache_stats(self) -> Dict[str, int]:
        """How the texts' attributions were found: ``computed``, ``memory_hits``,
        ``disk_hits``, ``disk_unreadable``."""
    @property
    def provenance(self) -> str:
        """The model, the engine and the settings, as JSON object text."""
    @property
    def model_path(self) -> str:
        """The model's folder."""
    @property
    def hidden_size(self) -> int:
        """The embedding's width."""
    @property
    def max_seq_length(self) -> int:
        """The most tokens a text may have (longer ones are truncated or refused)."""
