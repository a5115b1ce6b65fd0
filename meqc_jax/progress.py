"""A progress bar for long host loops (evaluation chunks, training epochs), or nothing.

On a terminal it is a live rich bar that disappears when done (`transient`); off a terminal
(logs, CI, notebooks' captured output) it prints nothing, so logs hold only the lines callers
write themselves.
"""

from __future__ import annotations


def on_terminal() -> bool:
    """Whether standard output is an interactive terminal (rich's own test, which honours FORCE_COLOR/TTY_*)."""
    from rich.console import Console

    return Console().is_terminal


class ProgressBar:
    """`ProgressBar(enabled, total)`; `advance(label)` once per unit of work; `close()` at the end."""

    def __init__(self, enabled: bool, total: int):
        self._p = None
        if enabled and on_terminal():
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._p = Progress(TextColumn("{task.description:<20}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                               TimeElapsedColumn(), TimeRemainingColumn(), transient=True)
            self._task = self._p.add_task("", total=total)
            self._p.start()

    def advance(self, label: str, steps: int = 1):
        if self._p is not None:
            self._p.update(self._task, advance=steps, description=label)

    def close(self):
        if self._p is not None:
            self._p.stop()
            self._p = None
