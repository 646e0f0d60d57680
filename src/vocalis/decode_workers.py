"""The decoding worker processes that data preparation and the local predict engine share.

Both stages turn many audio files into numbers with the same shape of pipeline: a pool of worker processes
decodes (and, for preparation, featurizes) a bounded number of tasks ahead of the consumer in this process,
which takes the results in task order. :func:`ordered_map` is that pipeline, once:

- ``vocalis predict`` (:mod:`vocalis.inference.engine`) maps :func:`vocalis.inference.jobs.decode_job` over
  its jobs and runs onnxruntime on the waveforms while the workers decode the next files;
- ``vocalis data prepare`` (:mod:`vocalis.data.prepare`) maps its header reads and its decode-and-featurize
  chunks, the workers writing features straight into the cache's memory map;
- ``vocalis data embed`` (:mod:`vocalis.transfer.cache`) maps its decode-and-embed chunks.

Results come back in task order whatever order the workers finish in (deterministic outputs), and memory is
bounded by the tasks in flight. Each worker starts with :func:`worker_start`: one BLAS/OpenMP thread (the
processes already fill the cores, and a multi-threaded matrix product in each of them spins on the cores
the others need) and an allocator that keeps freed memory (:func:`keep_freed_memory`). The module imports
the standard library and threadpoolctl only: a worker started by ``spawn`` imports no more than its task
needs.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Literal, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

StartMethod = Literal["fork", "spawn"]


def cpu_count() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: allocations up to this size come from the heap and are reused after they are freed
MMAP_THRESHOLD = 32 << 20
#: freed heap memory kept for reuse before any is given back to the system
TRIM_THRESHOLD = 128 << 20


def keep_freed_memory() -> bool:
    """Make glibc's allocator keep freed memory in this process for the next allocation; False where the C
    library is not glibc (nothing changes there).

    A worker allocates the same few arrays of 0.1-2 MB for every clip (frames, spectra, waveforms). glibc
    serves an allocation that large with a fresh ``mmap`` and unmaps it on ``free`` (or trims the heap
    back), so each clip pays page faults to zero new pages again: measured, 0.5-1 ms of a short clip's
    2.4-3.7 ms of featurizing here (``docs/benchmarks.md``). With fixed thresholds (32 MiB; 128 MiB kept)
    freed blocks are reused; the cost is up to that much idle heap per worker.
    """
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        # glibc's soname (ctypes.util.find_library would run ldconfig in a subprocess at every worker start)
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        return bool(ok and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    except (OSError, AttributeError):  # pragma: no cover - a C library without mallopt
        return False


def worker_start() -> None:
    """Worker start-up: one BLAS/OpenMP thread in this process (and in torch, when it is loaded), and an
    allocator that keeps freed memory (:func:`keep_freed_memory`)."""
    import sys

    from threadpoolctl import threadpool_limits

    # a spawned worker has loaded no BLAS yet (threadpool_limits limits only loaded ones): the variables
    # are what OpenBLAS, MKL and OpenMP read when the task's imports load them
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    threadpool_limits(1)
    torch = sys.modules.get("torch")  # only when the parent had it: never imported for this
    if torch is not None:
        torch.set_num_threads(1)
    keep_freed_memory()


def start_method(preferred: StartMethod) -> StartMethod:
    """``preferred`` where the platform has it, else ``spawn``."""
    return preferred if preferred in mp.get_all_start_methods() else "spawn"


def ordered_map(
    fn: Callable[[T], R],
    tasks: Iterable[T],
    *,
    workers: int,
    ahead: int | None = None,
    method: StartMethod = "spawn",
    initializer: Callable[[], None] | None = worker_start,
) -> Iterator[R]:
    """``fn(task)`` for each task, in task order, computed by ``workers`` processes at most ``ahead`` tasks
    ahead of the consumer (default ``2 * workers + 2``).

    ``workers == 0`` runs every task in this process when the consumer asks for it (no process start-up;
    the same code path, for tests and tiny inputs). ``fn`` and the tasks must pickle (under ``spawn``);
    ``method="fork"`` suits a caller that holds no thread pool a child could inherit locked (preparation:
    workers start in milliseconds and inherit the imported modules), ``"spawn"`` one that does (the predict
    engine holds onnxruntime's). An exception in a task is raised here, when its turn comes.
    """
    if workers <= 0:
        yield from map(fn, tasks)
        return
    depth = max(1, ahead if ahead is not None else 2 * workers + 2)
    ctx = mp.get_context(start_method(method))
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=initializer) as pool:
        pending: deque[Future[R]] = deque()
        it = iter(tasks)
        for task in it:
            pending.append(pool.submit(fn, task))
            if len(pending) >= depth:
                break
        while pending:
            result = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(fn, nxt))
            yield result


def star(fn: Callable[..., R]) -> Callable[[tuple[Any, ...]], R]:
    """``fn`` taking its arguments as one tuple (for :func:`ordered_map` over argument tuples); picklable
    when ``fn`` is a module-level function."""
    return _Star(fn)


class _Star:
    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, args: tuple[Any, ...]) -> Any:
        return self.fn(*args)


def chunks(seq: Sequence[T], n: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``seq`` of at most ``n`` items (the tasks of a cache build)."""
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
