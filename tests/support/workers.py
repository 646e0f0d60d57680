"""Tasks for decoding-worker tests, in an importable package so that a spawned worker unpickles them."""

from __future__ import annotations


def worker_state(_: object) -> tuple[int, bool]:
    """``(the most threads of any BLAS/OpenMP pool, whether the allocator setting took)`` in this process,
    with numpy imported as a task's imports would."""
    import numpy  # noqa: F401  (loads the BLAS whose threads are counted)
    from threadpoolctl import threadpool_info

    from vocalis.decode_workers import keep_freed_memory

    return max((p["num_threads"] for p in threadpool_info()), default=1), keep_freed_memory()
