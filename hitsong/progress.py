"""Progress of long work: count, rate and ETA as log lines, or a bar on a terminal; never ``print``.

``Progress(..., bar=True)`` redraws one line on a terminal (``stderr`` by default) instead of
logging every few seconds; the last state is logged once at the end either way, so a log file
keeps the summary. ``bar=None`` chooses the bar when the stream is a terminal.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")


def _fmt_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Log ``label: done/total (pct) rate/s ETA`` at most every ``every`` seconds.

    Parameters
    ----------
    label : str
        What is being counted, e.g. ``"features mandarin"``.
    total : int or None
        How many items there are; ``None`` when unknown (no ETA then).
    unit : str
        Name of one item, e.g. ``"songs"``.
    every : float
        Minimum seconds between two log lines (the last item always logs).
    logger : logging.Logger or None
        Where to log; default ``hitsong.progress``.
    bar : bool or None
        Redraw a bar on ``stream`` instead of logging lines; ``None``: when ``stream`` is a terminal.
    stream : file or None
        The bar's stream; default ``sys.stderr``.
    """

    #: Characters of the bar itself, and seconds between two redraws.
    BAR_WIDTH = 24
    BAR_EVERY = 0.2

    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        unit: str = "items",
        every: float = 2.0,
        logger: logging.Logger | None = None,
        bar: bool | None = False,
        stream: TextIO | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.every = every
        self.done = 0
        self.log = logger or logging.getLogger("hitsong.progress")
        self.stream = stream if stream is not None else sys.stderr
        self.bar = bool(self.stream.isatty()) if bar is None else bar
        self._start = time.monotonic()
        self._last = 0.0
        self._drawn = False
        self.extra = ""

    def update(self, n: int = 1, *, extra: str = "") -> None:
        """Count ``n`` more items; ``extra`` is appended to the line (e.g. losses)."""
        self.done += n
        if extra:
            self.extra = extra
        now = time.monotonic()
        finished = self.total is not None and self.done >= self.total
        if self.bar:
            if finished or now - self._last >= self.BAR_EVERY:
                self._last = now
                self._draw()
            if finished:
                self.close()
            return
        if finished or now - self._last >= self.every:
            self._last = now
            self.log.info("%s", self.line())

    def _draw(self) -> None:
        filled = int(self.BAR_WIDTH * self.done / self.total) if self.total else 0
        bar = "#" * filled + "." * (self.BAR_WIDTH - filled)
        self.stream.write(f"\r[{bar}] {self.line()}\033[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the bar's line and log the last state (a no-op for log lines, or when done before)."""
        if self.bar and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
            self.log.info("%s", self.line())

    def line(self) -> str:
        """The current progress line."""
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            pct = 100.0 * self.done / self.total
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            eta_s = _fmt_seconds(eta) if eta != float("inf") else "?"
            text = (
                f"{self.label}: {self.done}/{self.total} {self.unit} ({pct:.0f}%) "
                f"{rate:.2f} {self.unit}/s elapsed {_fmt_seconds(elapsed)} ETA {eta_s}"
            )
        else:
            text = f"{self.label}: {self.done} {self.unit} {rate:.2f} {self.unit}/s"
        return f"{text} {self.extra}".rstrip()


def track(items: Iterable[T], label: str, *, total: int | None = None, unit: str = "items") -> Iterator[T]:
    """Iterate over ``items`` logging progress."""
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    bar = Progress(label, total, unit=unit)
    for item in items:
        yield item
        bar.update()
