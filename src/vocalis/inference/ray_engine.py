"""The Ray engine: the same jobs as the local engine, run on a Ray cluster with Ray Data.

The run is a Ray Data pipeline over the planned jobs (:func:`vocalis.inference.jobs.plan_jobs`: one per short
file, one per segment of a long one):

1. ``map(decode)``: CPU tasks run :func:`vocalis.inference.jobs.decode_job` (local paths must be readable on
   every node; object-store URIs are read by the task through pyarrow's filesystems);
2. ``map(Predict)``: an actor pool, each actor loading the artifact's :class:`Predictor` once and running the
   job's windows in batches;
3. the driver reads the rows back in job order (Ray Data's ``preserve_order``) and assembles each file's
   prediction with :class:`vocalis.inference.jobs.FileAssembler`, exactly as the local engine does, so the
   two engines write the same rows (probabilities agree to float rounding of the batch shapes).

Rows carry the waveform and the probabilities as raw float32 bytes: every row then has the same Arrow types
whatever its length (an empty array for a file that failed, a long one for a segment).

Ray is an optional dependency (``pip install 'vocalis[ray]'``); this module imports it only when run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vocalis.contracts.runtime import default_threads
from vocalis.contracts.windows import WindowSpec
from vocalis.errors import ConfigError, VocalisError
from vocalis.inference.jobs import FileAssembler, Job, JobResult, cut, decode_job

log = logging.getLogger(__name__)

#: what to install when Ray is missing
RAY_EXTRA = "vocalis[ray]"


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


def _decode_row(row: dict[str, Any]) -> dict[str, Any]:
    """Ray task: a job (as JSON) -> its decoded waveform as bytes, and the facts the model side needs."""
    job = Job(**json.loads(row["job"]))
    d = decode_job(job)
    return {
        "index": job.index,
        "wave": np.ascontiguousarray(d.wave, dtype=np.float32).tobytes(),
        "offset": d.offset,
        "first_window": d.first_window,
        "n_windows": 0 if d.error else d.n_windows,
        "total": d.total,
        "sample_rate": d.sample_rate,
        "channels": d.channels,
        "duration_s": d.duration_s,
        "error": d.error or "",
    }


class _Predict:
    """Ray actor: loads the artifact once, then predicts the windows of each decoded job it is given."""

    def __init__(
        self, artifact: str, threads: int, batch_size: int | None, window_s: float, hop_s: float
    ) -> None:
        from vocalis.inference.predictor import Predictor

        self.predictor = Predictor.from_dir(artifact, threads=threads, batch_size=batch_size)
        self.spec = self.predictor.window_spec(window_s, hop_s)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        wave = np.frombuffer(row["wave"], dtype=np.float32)
        n = int(row["n_windows"])
        windows = cut(wave, int(row["offset"]), int(row["first_window"]), n, self.spec)
        probs = self.predictor.predict_windows(windows) if n else np.zeros((0, 0), np.float32)
        out = {k: v for k, v in row.items() if k != "wave"}
        out["probs"] = np.ascontiguousarray(probs, dtype=np.float32).tobytes()
        return out


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
        num_workers: model actors (default: half the cluster's CPUs, at least one: the rest decode).
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
                ray.init(num_cpus=default_threads(), **kwargs)
        except Exception as exc:  # Ray raises bare Exception/ConnectionError on a failed start or connect
            ray.shutdown()
            where = address or "a local Ray instance"
            raise VocalisError(f"engine: Ray could not start or reach {where} ({exc})") from None
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # rows come back in job order: deterministic output
        ctx.enable_progress_bars = False  # the CLI draws its own
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = num_workers or max(1, cpus // (2 * max(1, threads)))
        if not jobs:
            return
        items = [{"job": json.dumps(dataclasses.asdict(j))} for j in jobs]
        ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 4 * cpus)))
        ds = ds.map(_decode_row, num_cpus=1)
        ds = ds.map(
            _Predict,
            fn_constructor_kwargs={
                "artifact": str(Path(artifact).resolve()),
                "threads": threads,
                "batch_size": batch_size,
                "window_s": spec.window_s,
                "hop_s": spec.hop_s,
            },
            concurrency=actors,
            num_cpus=threads,
        )
        assembler = FileAssembler(classes, spec, top_k, min_conf)
        n_classes = len(classes)
        for row in ds.iter_rows():
            job = jobs[int(row["index"])]
            probs = np.frombuffer(row["probs"], dtype=np.float32).reshape(-1, n_classes)
            result = JobResult(
                job,
                probs,
                int(row["first_window"]),
                int(row["total"]),
                int(row["sample_rate"]),
                int(row["channels"]),
                float(row["duration_s"]),
                row["error"] or None,
            )
            done = assembler.add(result)
            if done is not None:
                yield done
    finally:
        if started:
            ray.shutdown()
