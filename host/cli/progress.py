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
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
        disable=disable,
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


def format_epoch(rec: dict) -> str:
    """One line per epoch, as ``qdev train`` prints it."""
    t, v, b = rec["train"], rec["val"], rec.get("bits")
    line = (
        f"epoch {rec['epoch']:3d}  loss {t['total']:.3f}  val dice {v['dice']:.3f} "
        f"lesion {v['dice_lesion']:.3f}  acc {v['pixel_acc']:.4f}"
    )
    if "val_live" in rec:
        line += f" (live {rec['val_live']['dice_lesion']:.3f})"
    if b:
        line += f"  bits w {b['avg_weight_bits']:.2f} a {b['avg_act_bits']:.2f}"
    return line + f"  {rec['seconds']:.1f}s" + ("  *best*" if rec["best"] else "")


@contextmanager
def training_progress(console, epochs: int) -> Iterator[Callable[[str, dict], None]]:  # noqa: ANN001
    """The trainer's ``progress(event, info)`` callback: a per-epoch step bar and an epoch line."""
    prog = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=True,
    )
    task: dict[int, int] = {}
    started: list[bool] = []

    def update(event: str, info: dict) -> None:
        if not started:  # lazily: an error before the first step prints nothing but itself
            prog.start()
            started.append(True)
        if event == "step":
            e = info["epoch"]
            if e not in task:
                for t in task.values():
                    prog.remove_task(t)
                task.clear()
                task[e] = prog.add_task(f"epoch {e}/{epochs}", total=info["steps"], info="")
            prog.update(task[e], completed=info["step"], info=f"loss {info['loss']:.3f}")
        elif event == "epoch":
            for t in task.values():
                prog.remove_task(t)
            task.clear()
            console.print(format_epoch(info))

    try:
        yield update
    finally:
        if started:
            prog.stop()
