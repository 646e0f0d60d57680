"""The pipelined local engine: decoding in worker processes overlaps batched inference in this process.

``vocalis predict`` used to take one file at a time: decode it, run its windows, write, next. With many short
clips the model then ran batches of one or two windows while the CPU waited for the decoder, and the decoder
waited for the model. Here :func:`vocalis.inference.jobs.decode_job` runs in a pool of worker processes, a few
jobs ahead of the model, in order (:func:`vocalis.decode_workers.ordered_map`, the pipeline that ``vocalis
data prepare`` decodes and featurizes on too), and this process cuts their waveforms into windows, gathers
windows from consecutive files into full batches for onnxruntime and hands back each file's prediction in
input order.

Results come out in input order whatever order the workers finish in (deterministic output, and a resumable
run's journal can say "every file before this one is done"). Memory is bounded by the jobs in flight
(``2 * workers + 2``; a job is a short file or a segment of :data:`vocalis.inference.jobs.SEGMENT_S`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from vocalis.contracts.runtime import default_threads
from vocalis.contracts.windows import WindowSpec
from vocalis.decode_workers import ordered_map
from vocalis.inference.jobs import Decoded, FileAssembler, Job, JobResult, cut_windows, decode_job
from vocalis.inference.predictor import FilePrediction, Predictor

log = logging.getLogger(__name__)

#: a file's outcome: its path and its prediction, or the reason it could not be predicted
Outcome = tuple[str, FilePrediction | str]


def default_workers() -> int:
    """Decoding processes: none on one or two CPUs, else half the CPUs.

    On two idle cores onnxruntime's threads already fill both, and inference is about two thirds of a short
    clip's work: a decoding process only competes with them (measured in ``benchmarks/bench_scale.py``, docs:
    the local engine with one decoding process was 5-20 % slower than decoding in line). With more cores the
    decoders run beside the model.
    """
    cpus = default_threads()
    return 0 if cpus <= 2 else cpus // 2


@dataclass
class _Waiting:
    decoded: Decoded
    parts: list[np.ndarray]
    remaining: int


class LocalEngine:
    """Predicts jobs with one :class:`Predictor` in this process and ``workers`` decoding processes.

    ``workers=0`` decodes in this process (no pipelining; the same code path, for tests and small runs).
    """

    def __init__(
        self, predictor: Predictor, *, workers: int | None = None, batch_size: int | None = None
    ) -> None:
        self.predictor = predictor
        self.workers = default_workers() if workers is None else max(0, int(workers))
        self.batch_size = batch_size or predictor.batch_size

    def run(
        self, jobs: Iterable[Job], spec: WindowSpec, *, top_k: int = 3, min_conf: float = 0.0
    ) -> Iterator[Outcome]:
        """Each file's outcome, in job (input) order, as soon as it and every file before it are done."""
        assembler = FileAssembler(self.predictor.classes, spec, top_k, min_conf)
        for result in self._job_results(jobs, spec):
            done = assembler.add(result)
            if done is not None:
                yield done

    def _decoded(self, jobs: Iterable[Job]) -> Iterator[Decoded]:
        # one job has nothing to overlap with: starting a process would only add its start-up
        if self.workers == 0 or (isinstance(jobs, list) and len(jobs) <= 1):
            yield from map(decode_job, jobs)
            return
        # spawn, not fork: this process holds onnxruntime's thread pool, which a forked child must not inherit
        ahead = 2 * self.workers + 2
        yield from ordered_map(decode_job, jobs, workers=self.workers, ahead=ahead, method="spawn")

    def _job_results(self, jobs: Iterable[Job], spec: WindowSpec) -> Iterator[JobResult]:
        """Job results in order; windows of consecutive jobs share onnxruntime batches."""
        bs = self.batch_size
        waiting: deque[_Waiting] = deque()
        buf: list[np.ndarray] = []
        buffered = 0
        n_classes = len(self.predictor.classes)

        def run_batches(final: bool) -> None:
            nonlocal buf, buffered
            x = np.concatenate(buf) if len(buf) > 1 else buf[0]
            n_run = len(x) if final else (len(x) // bs) * bs
            probs = self.predictor.predict_windows(x[:n_run], bs)
            rest = x[n_run:]
            buf, buffered = ([rest] if len(rest) else []), len(rest)
            at = 0
            for entry in waiting:  # hand the probabilities to the jobs waiting for them, oldest first
                if at >= n_run:
                    break
                take = min(entry.remaining, n_run - at)
                if take:
                    entry.parts.append(probs[at : at + take])
                    entry.remaining -= take
                    at += take

        def finished() -> Iterator[JobResult]:
            while waiting and waiting[0].remaining == 0:
                e = waiting.popleft()
                probs = np.concatenate(e.parts) if e.parts else np.zeros((0, n_classes), np.float32)
                yield JobResult.of(e.decoded, probs)

        for d in self._decoded(jobs):
            n = 0 if d.error else d.n_windows
            waiting.append(_Waiting(d, [], n))
            if n:
                buf.append(cut_windows(d, spec))
                buffered += n
                d.wave = np.zeros(0, np.float32)  # cut: the waveform is not needed any more
                if buffered >= bs:
                    run_batches(final=False)
            yield from finished()
        if buffered:
            run_batches(final=True)
        yield from finished()
