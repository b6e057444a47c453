"""A rich progress bar exposed as a ``progress(done, total)`` callback for library code."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

__all__ = ["progress_bar"]


@contextmanager
def progress_bar(label: str, disable: bool = False) -> Iterator[Callable[[int, int], None]]:
    """Yield a callback that drives a progress bar (created lazily on the first call)."""
    prog = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        transient=True, disable=disable,
    )
    task: list[int] = []

    def update(done: int, total: int) -> None:
        if not task:
            prog.start()
            task.append(prog.add_task(label, total=total))
        prog.update(task[0], completed=done, total=total)

    try:
        yield update
    finally:
        prog.stop()
