"""The progress bar of the commands that build something in named stages (prepare, embed, train).

Library code reports ``progress(stage, done, total)`` (:class:`vocalis.contracts.progress.Progress`); this
draws one rich bar per stage from those calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from vocalis.contracts.progress import Progress as ProgressCallback


def stage_progress(console: Console, prefix: str = "") -> tuple[Progress, ProgressCallback]:
    """A rich bar (use it as a context manager) and the callback that feeds it, one task per stage.

    ``prefix`` goes before each stage's name (``"prepare: "`` in ``vocalis train``).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    tasks: dict[str, TaskID] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(f"{prefix}{stage}", total=total)
        bar.update(tasks[stage], completed=done)

    return bar, progress
