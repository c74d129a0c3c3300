"""Progress that suits where the output goes: a live bar on a terminal, steady lines in a log.

A rich bar (or tqdm's) written to a file either stays silent for the whole job (rich: indexing a
catalog printed nothing for minutes under `nohup`) or floods it with carriage-return frames
(tqdm: the eval log). Off a terminal we print one plain line every ``interval`` seconds instead:
``encoding: 1,024/17,033 (6%), 14.2/s, about 19 min left``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TextIO, TypeVar

T = TypeVar("T")

#: Seconds between progress lines when stderr is not a terminal (SHOPREC_PROGRESS_INTERVAL_S).
DEFAULT_INTERVAL_S = 30.0


def _interval() -> float:
    try:
        return float(os.environ.get("SHOPREC_PROGRESS_INTERVAL_S", DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class LineProgress:
    """Counts work and writes a line at most every ``interval`` seconds (and one at the end)."""

    def __init__(self, description: str, total: int | None, stream: TextIO | None = None,
                 interval: float | None = None) -> None:
        self.description = description
        self.total = total
        self.stream = stream or sys.stderr
        self.interval = _interval() if interval is None else interval
        self.done = 0
        self._started = self._last = time.monotonic()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.description}: {self.done:,}"
        if self.total:
            text += f"/{self.total:,} ({100 * self.done / self.total:.0f}%)"
        text += f", {rate:.1f}/s"
        if self.total and rate > 0 and self.done < self.total:
            text += f", about {_duration((self.total - self.done) / rate)} left"
        elif self.done == self.total:
            text += f", done in {_duration(elapsed)}"
        return text

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            print(self.line(), file=self.stream, flush=True)

    def finish(self) -> None:
        print(self.line(), file=self.stream, flush=True)


class _RichProgress:
    def __init__(self, description: str, total: int | None) -> None:
        from rich.progress import Progress

        self._bar = Progress(transient=False)
        self._task = self._bar.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        self._bar.advance(self._task, n)


class _Silent:
    def advance(self, n: int = 1) -> None:
        pass


@contextmanager
def progress(description: str, total: int | None, enabled: bool = True) -> Iterator[LineProgress | _RichProgress | _Silent]:
    """``with progress("encoding", n) as bar: ... bar.advance(k)``: the right display for stderr."""
    if not enabled:
        yield _Silent()
    elif sys.stderr.isatty():
        shown = _RichProgress(description, total)
        with shown._bar:
            yield shown
    else:
        lines = LineProgress(description, total)
        yield lines
        lines.finish()


def track(items: Iterable[T], description: str, enabled: bool = True, total: int | None = None) -> Iterator[T]:
    """Iterate ``items`` under ``progress`` (a drop-in for ``tqdm(items, desc=...)``)."""
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with progress(description, total, enabled) as bar:
        for item in items:
            yield item
            bar.advance()
