"""A tiny progress bar on stderr for long CLI work; silent when stderr is not a terminal or when quiet."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TextIO

#: Redraw at most this often (seconds), so a fast loop does not flood the terminal.
_MIN_REDRAW_S = 0.1
_WIDTH = 30


class Progress:
    """``with Progress("export", total=n) as bar: ... bar.advance()``; draws ``label [####   ] 3/10``.

    Draws only when ``stream`` is a TTY and ``quiet`` is false, so scripts, pipes and tests see
    nothing. ``total`` may be 0 (nothing to do: nothing is drawn). The finished line is ended
    with a newline on exit so the next output starts on its own line.
    """

    def __init__(self, label: str, total: int, *, quiet: bool = False, stream: TextIO | None = None) -> None:
        if total < 0:
            raise ValueError(f"progress total must be >= 0, got {total}")
        self.label = label
        self.total = total
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = not quiet and total > 0 and _is_tty(self._stream)
        self._last_draw = 0.0
        self._drawn = False

    def __enter__(self) -> Progress:
        self._draw(force=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def advance(self, steps: int = 1) -> None:
        """Count ``steps`` more units of work done and redraw when due."""
        self.done = min(self.total, self.done + steps)
        self._draw(force=self.done == self.total)

    def close(self) -> None:
        """End the bar's line (only if something was drawn)."""
        if self.enabled and self._drawn:
            self._draw(force=True)
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False
            self.enabled = False

    def render(self) -> str:
        """The bar's text for the current count (without the carriage return)."""
        total = max(self.total, 1)
        filled = round(_WIDTH * self.done / total)
        return f"{self.label} [{'#' * filled}{' ' * (_WIDTH - filled)}] {self.done}/{self.total}"

    def _draw(self, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < _MIN_REDRAW_S:
            return
        self._last_draw = now
        self._stream.write("\r" + self.render())
        self._stream.flush()
        self._drawn = True


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or a stream without isatty
        return False


@contextmanager
def progress_callback(
    label: str, *, quiet: bool = False, stream: TextIO | None = None
) -> Iterator[Callable[[int, int], None]]:
    """A ``(done, total)`` callback for work that learns its total late; draws a :class:`Progress`.

    ``with progress_callback("report") as step: do_work(progress=step)``; the bar's line is
    ended when the block exits.
    """
    bars: list[Progress] = []

    def step(done: int, total: int) -> None:
        if not bars or bars[-1].total != total:
            if bars:
                bars[-1].close()
            bars.append(Progress(label, total, quiet=quiet, stream=stream).__enter__())
        bar = bars[-1]
        bar.advance(done - bar.done)

    try:
        yield step
    finally:
        for bar in bars:
            bar.close()
