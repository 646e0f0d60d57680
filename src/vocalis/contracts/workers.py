"""The worker pool of the cache builders: chunks of clips through processes, a bounded number in flight.

Both caches (:mod:`vocalis.data.prepare`'s features, :mod:`vocalis.transfer.cache`'s embeddings) decode
clips and compute one row per window in worker processes. :func:`worker_pool` gives the executor (forked
processes, or this process for one worker or a tiny dataset) and :func:`run_bounded` feeds it lazily, so a
chunk's inputs (paths, or the bytes of a parquet row) are produced only when a worker is ready for them and
memory stays bounded by the chunks in flight, not by the dataset.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from typing import Any, TypeVar

T = TypeVar("T")


class InlineExecutor(Executor):
    """Runs tasks in this process (one worker, or tiny datasets): no process start-up cost."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn`` now; the future holds its result or exception."""
        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut


def worker_pool(
    workers: int,
    initializer: Callable[..., object] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Executor:
    """``workers`` processes (forked where the platform allows), or an :class:`InlineExecutor` for one.

    Fork: workers inherit the imported modules and whatever the parent loaded (a source, a model), so
    nothing large is pickled. ``initializer`` runs in each worker, and here for the inline executor.
    """
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        return InlineExecutor()
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(
        workers, mp_context=mp.get_context(method), initializer=initializer, initargs=initargs
    )


def run_bounded(
    pool: Executor,
    fn: Callable[..., T],
    tasks: Iterator[tuple[Any, ...]],
    in_flight: int,
    on_result: Callable[[T], None],
) -> None:
    """Submit ``fn(*task)`` lazily, at most ``in_flight`` at a time; ``on_result`` gets each result."""
    pending: set[Future[T]] = set()
    for args in tasks:
        pending.add(pool.submit(fn, *args))
        if len(pending) >= in_flight:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                on_result(f.result())
    for f in pending:
        on_result(f.result())


def chunks(seq: Sequence[T], n: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``seq`` of at most ``n`` items."""
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
