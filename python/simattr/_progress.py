"""Progress bars: tqdm's (a widget in notebooks, text on stderr elsewhere) when tqdm is installed
and bars are wanted, otherwise nothing.

``progress_bar(...)`` is a context manager; its ``callback`` fits the ``progress`` argument of
``Session.explain``, which reports ``(done, total)`` in integration steps now and then.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, Optional, Type

__all__ = ["ProgressBar", "progress_bar"]


def _tqdm_class() -> Optional[Any]:
    """``tqdm.auto.tqdm``, or None when tqdm is not installed."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


class ProgressBar:
    """A progress bar that may be none: every method is a no-op without a bar.

    Use it as a context manager (the bar is closed on leaving) and pass ``callback`` as a
    ``progress(done, total)`` callable, or count with ``update``.
    """

    def __init__(self, total: Optional[int], desc: str, enabled: bool, unit: str = "it") -> None:
        """A bar over ``total`` units (None: unknown yet) labelled ``desc``; none unless
        ``enabled`` and tqdm is installed."""
        tqdm = _tqdm_class() if enabled else None
        self._bar: Optional[Any] = None
        if tqdm is not None:
            self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)

    @property
    def active(self) -> bool:
        """Whether a bar is drawn."""
        return self._bar is not None

    def update(self, n: int = 1) -> None:
        """Advances the bar by ``n`` units."""
        if self._bar is not None and n:
            self._bar.update(n)

    def set_total(self, total: Optional[int]) -> None:
        """Sets the number of units the bar counts up to (when it is known only later)."""
        if self._bar is not None and total != self._bar.total:
            self._bar.total = total
            self._bar.refresh()

    def callback(self, done: int, total: int) -> None:
        """``progress(done, total)`` with cumulative counts: sets the total, moves to ``done``."""
        if self._bar is None:
            return
        if total:
            self.set_total(total)
        self.update(done - self._bar.n)

    def close(self) -> None:
        """Closes the bar (idempotent)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(
        self,
        kind: Optional[Type[BaseException]],
        error: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()


def progress_bar(total: Optional[int], desc: str, enabled: bool, unit: str = "it") -> ProgressBar:
    """A :class:`ProgressBar` over ``total`` units (None: unknown yet) labelled ``desc``,
    drawn on stderr (a widget in notebooks) only if ``enabled`` and tqdm is installed."""
    return ProgressBar(total, desc, enabled, unit)
