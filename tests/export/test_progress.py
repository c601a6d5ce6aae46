"""The stderr progress bar: drawn on a terminal only, silent when quiet or piped."""

from __future__ import annotations

import io

import pytest

from service.progress import Progress, progress_callback


class Terminal(io.StringIO):
    """A text stream that says it is a terminal (what a real stderr on a TTY says)."""

    def isatty(self) -> bool:
        return True


def test_bar_draws_on_a_terminal_and_ends_its_line() -> None:
    out = Terminal()
    with Progress("export", total=4, stream=out) as bar:
        for _ in range(4):
            bar.advance()
    text = out.getvalue()
    assert text.startswith("\rexport [")
    assert text.endswith("] 4/4\n")
    assert "#" * 30 in text


def test_bar_is_silent_when_piped_or_quiet() -> None:
    piped = io.StringIO()
    with Progress("export", total=3, stream=piped) as bar:
        bar.advance(3)
    quiet = Terminal()
    with Progress("export", total=3, stream=quiet, quiet=True) as bar:
        bar.advance(3)
    assert piped.getvalue() == "" and quiet.getvalue() == ""


def test_bar_counts_up_to_its_total_only_and_refuses_a_negative_total() -> None:
    bar = Progress("x", total=2, stream=io.StringIO())
    bar.advance(5)
    assert bar.done == 2
    assert bar.render() == "x [" + "#" * 30 + "] 2/2"
    with pytest.raises(ValueError, match=">= 0"):
        Progress("x", total=-1)


def test_callback_follows_work_that_learns_its_total_late() -> None:
    out = Terminal()
    with progress_callback("reading nights", stream=out) as step:
        for i in range(1, 6):
            step(i, 5)
    assert out.getvalue().endswith("reading nights [" + "#" * 30 + "] 5/5\n")
    assert out.getvalue().count("\n") == 1
