"""The one way to open an ONNX model with onnxruntime (CPU), for prediction, export checks and benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort

from vocalis.errors import ArtifactError


def default_threads() -> int:
    """The CPUs this process may run on (cgroup/affinity aware where the OS says so)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def onnx_session(path: str | Path, threads: int | None = None) -> ort.InferenceSession:
    """An onnxruntime CPU session with every graph optimisation, ``threads`` intra-op threads (default: the
    CPUs this process may use) and sequential execution; :class:`ArtifactError` when the file does not load.
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or default_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: onnxruntime's warnings are not the user's business
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
        raise ArtifactError(f"{path}: not a loadable ONNX model ({exc})") from None
