"""Progress callbacks: library code reports progress through these, the CLI draws bars from them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Progress(Protocol):
    """``progress(stage, done, total)``: ``done`` of ``total`` items of a named stage are finished."""

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Report progress."""


#: ``on_progress(seconds)``: seconds of audio processed so far (long-file prediction)
AudioProgress = Callable[[float], None]
