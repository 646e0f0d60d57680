"""The Ray engine: the same jobs as the local engine, run on a Ray cluster with Ray Data.

The run is a Ray Data pipeline over the planned jobs (:func:`vocalis.inference.jobs.plan_jobs`: one per short
file, one per segment of a long one), grouped into tasks (:func:`group_jobs`: a segment alone, short files
together):

1. ``map(_DecodeAndPredict)``: an actor pool, one actor per CPU by default. Each actor loads the artifact's
   :class:`Predictor` once; for each task it decodes its jobs with :func:`vocalis.inference.jobs.decode_job`
   (local paths must be readable on every node; object-store URIs are read through pyarrow's filesystems),
   cuts their windows and runs them in full onnxruntime batches across the task's files;
2. the driver reads the rows back in task order (Ray Data's ``preserve_order``) and assembles each file's
   prediction with :class:`vocalis.inference.jobs.FileAssembler`, exactly as the local engine does, so the
   two engines write the same rows (probabilities agree to float rounding of the batch shapes).

Why decoding and inference share an actor instead of decode tasks feeding a model pool: Ray Data fused the
two steps into one actor anyway (its plan read ``Map(decode)->Map(Predict)``), but with the actor count
sized for the model alone (half the CPUs), so half of every node sat idle; and a waveform between two steps
would cross the object store (460 MB per audio hour at 32 kHz) where only the probabilities need to. A task
of several short files also gives onnxruntime full batches instead of one file's two or three windows.

Rows carry a task's probabilities as raw float32 bytes and its jobs' facts as JSON: every row has the same
Arrow types whatever the task holds.

Ray is an optional dependency (``pip install 'vocalis[ray]'``); this module imports it only when run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vocalis.contracts.runtime import default_threads
from vocalis.contracts.windows import WindowSpec
from vocalis.errors import ConfigError, VocalisError
from vocalis.inference.jobs import FileAssembler, Job, JobResult, cut_windows, decode_job

log = logging.getLogger(__name__)

#: what to install when Ray is missing
RAY_EXTRA = "vocalis[ray]"
#: whole-file jobs in one task at most: enough windows of short clips for full onnxruntime batches, and a
#: task short enough that a kill loses little
MAX_JOBS_PER_TASK = 16
#: tasks per actor at least (when there are jobs enough): the last tasks leave few actors idle
TASKS_PER_ACTOR = 4


def require_ray() -> Any:
    """Import Ray (and Ray Data), or say which extra to install."""
    # Ray reads this once, at import. Its default, under `uv run`, starts every worker with `uv run` in the
    # worker's own folder, which builds another environment without Ray ("No module named 'ray'") and
    # leaves Ray Data waiting for its actors: vocalis's workers use this interpreter, as the engine does.
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError(
            f"engine: --engine ray needs Ray Data; install it with: pip install '{RAY_EXTRA}' "
            "(or: uv sync --extra ray)"
        ) from None
    return ray


def group_jobs(jobs: list[Job], actors: int) -> list[list[Job]]:
    """Consecutive jobs grouped into tasks: each segment of a long file alone (minutes of audio: the
    segments of one file go to several actors at once), short files together, at most
    :data:`MAX_JOBS_PER_TASK` and few enough that every actor gets :data:`TASKS_PER_ACTOR` tasks."""
    whole = sum(1 for j in jobs if j.n_segments == 1)
    size = max(1, min(MAX_JOBS_PER_TASK, math.ceil(whole / (TASKS_PER_ACTOR * max(1, actors)))))
    groups: list[list[Job]] = []
    current: list[Job] = []
    for job in jobs:
        if job.n_segments > 1:
            if current:
                groups.append(current)
                current = []
            groups.append([job])
            continue
        current.append(job)
        if len(current) >= size:
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups


class _DecodeAndPredict:
    """Ray actor: loads the artifact once, then decodes each task's jobs and predicts their windows."""

    def __init__(
        self, artifact: str, threads: int, batch_size: int | None, window_s: float, hop_s: float
    ) -> None:
        from vocalis.inference.predictor import Predictor

        self.predictor = Predictor.from_dir(artifact, threads=threads, batch_size=batch_size)
        self.spec = self.predictor.window_spec(window_s, hop_s)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        facts, windows = [], []
        for fields in json.loads(row["jobs"]):
            d = decode_job(Job(**fields))
            n = 0 if d.error else d.n_windows
            if n:
                windows.append(cut_windows(d, self.spec))
            facts.append(
                {
                    "index": d.job.index,
                    "n_windows": n,
                    "first_window": d.first_window,
                    "total": d.total,
                    "sample_rate": d.sample_rate,
                    "channels": d.channels,
                    "duration_s": d.duration_s,
                    "error": d.error or "",
                }
            )
        n_classes = len(self.predictor.classes)
        if windows:  # the task's files share batches, as consecutive files do in the local engine
            probs = self.predictor.predict_windows(
                np.concatenate(windows) if len(windows) > 1 else windows[0]
            )
        else:
            probs = np.zeros((0, n_classes), np.float32)
        return {"facts": json.dumps(facts), "probs": np.ascontiguousarray(probs, dtype=np.float32).tobytes()}


def run_ray(
    artifact: str | Path,
    jobs: list[Job],
    spec: WindowSpec,
    classes: list[str],
    *,
    top_k: int = 3,
    min_conf: float = 0.0,
    address: str | None = None,
    num_workers: int | None = None,
    threads: int = 1,
    batch_size: int | None = None,
) -> Iterator[tuple[str, Any]]:
    """Each file's outcome ``(path, FilePrediction or error reason)``, in job (input) order.

    Args:
        artifact: the artifact directory (readable at the same path on every node).
        jobs: from :func:`vocalis.inference.jobs.plan_jobs`.
        address: a running cluster (``auto``, ``ray://host:10001``, ``host:6379``); ``None`` starts a local
            Ray instance for this run and stops it after.
        num_workers: actors (default: one per ``threads`` CPUs of the cluster; each decodes and predicts).
        threads: onnxruntime threads per actor (each actor reserves as many CPUs).
    """
    ray = require_ray()
    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = dict(
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            configure_logging=False,
        )
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:
                # the raylet waits this long for its agents' port files; a busy machine needs more than the
                # default to start them (seen: 20 s on 2 cores at load 14)
                os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")
                # Ray starts its workers at nice 15 (its control plane first); on a machine shared with
                # other work they then get next to no CPU (seen: actors still loading the model after 2
                # minutes at load 18): this run's workers compete like the local engine's processes do
                os.environ.setdefault("RAY_worker_niceness", "0")
                # "local": a new instance even where RAY_ADDRESS is set or `ray start` left a cluster
                # running (ray.init() alone joins those; then --address says so)
                ray.init(address="local", num_cpus=default_threads(), **kwargs)
        except Exception as exc:  # Ray raises bare Exception/ConnectionError on a failed start or connect
            ray.shutdown()
            where = address or "a local Ray instance"
            hint = ""
            if "auth" in str(exc).lower() or "Unauthenticated" in str(exc):
                # clusters with token authentication (Ray's default for new clusters) refuse a driver
                # without the cluster's token
                hint = "; give this process the cluster's token: RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"
            raise VocalisError(f"engine: Ray could not start or reach {where} ({exc}){hint}") from None
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # rows come back in job order: deterministic output
        ctx.enable_progress_bars = False  # the CLI draws its own
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = num_workers or max(1, cpus // max(1, threads))
        if not jobs:
            return
        groups = group_jobs(jobs, actors)
        items = [{"jobs": json.dumps([dataclasses.asdict(j) for j in g])} for g in groups]
        # one task a block: the grouping above decides what an actor does at a time
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map(
            _DecodeAndPredict,
            fn_constructor_kwargs={
                "artifact": str(Path(artifact).resolve()),
                "threads": threads,
                "batch_size": batch_size,
                "window_s": spec.window_s,
                "hop_s": spec.hop_s,
            },
            concurrency=min(actors, len(items)),
            num_cpus=threads,
        )
        assembler = FileAssembler(classes, spec, top_k, min_conf)
        n_classes = len(classes)
        for row in ds.iter_rows():
            probs = np.frombuffer(row["probs"], dtype=np.float32).reshape(-1, n_classes)
            at = 0
            for f in json.loads(row["facts"]):
                n = int(f["n_windows"])
                result = JobResult(
                    jobs[int(f["index"])],
                    probs[at : at + n],
                    int(f["first_window"]),
                    int(f["total"]),
                    int(f["sample_rate"]),
                    int(f["channels"]),
                    float(f["duration_s"]),
                    f["error"] or None,
                )
                at += n
                done = assembler.add(result)
                if done is not None:
                    yield done
    finally:
        if started:
            ray.shutdown()
