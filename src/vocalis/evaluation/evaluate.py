"""Evaluate a trained checkpoint on a split of its feature cache.

Training's final test calls :func:`evaluate_checkpoint` on the best checkpoint, and ``vocalis evaluate``
calls :func:`evaluate_run`: one code path, so evaluating a run again reproduces its ``metrics.json``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vocalis.contracts.cache import SPLITS, FeatureCache
from vocalis.errors import CacheError, ConfigError
from vocalis.evaluation.metrics import classification_metrics, clip_accuracy
from vocalis.evaluation.report import (
    misclassified_table,
    plot_confusion_matrix,
    write_metrics_json,
    write_per_class_csv,
)
from vocalis.models.checkpoint import LoadedNetwork, load_network

log = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    """Metrics of one checkpoint on one split and the files written."""

    metrics: dict[str, Any]
    checkpoint: Path
    split: str
    output_dir: Path
    files: dict[str, Path] = field(default_factory=dict)


def open_cache_of(loaded: LoadedNetwork, cache: FeatureCache | None = None) -> FeatureCache:
    """The feature cache a network was trained on (``cache_dir`` of its checkpoint), hash-checked."""
    if cache is None:
        if not loaded.cache_dir:
            raise CacheError("checkpoint: no cache_dir recorded; cannot find the data it was trained on")
        cache = FeatureCache.open(loaded.cache_dir)
    if loaded.cache_hash and cache.hash and str(cache.hash) != str(loaded.cache_hash):
        raise CacheError(
            f"{cache.dir}: feature cache hash {cache.hash} differs from the checkpoint's {loaded.cache_hash}"
        )
    return cache


@torch.no_grad()
def predict_windows(
    net: torch.nn.Module, features: np.ndarray, rows: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """Softmax probabilities ``[len(rows), n_classes]`` of the cached windows ``rows``."""
    net.eval()
    out = []
    for i in range(0, len(rows), batch_size):
        idx = np.sort(rows[i : i + batch_size])
        back = np.argsort(np.argsort(rows[i : i + batch_size], kind="stable"), kind="stable")
        x = torch.from_numpy(np.asarray(features[idx], dtype=np.float32)).unsqueeze(1)
        out.append(torch.softmax(net(x).float(), dim=1).numpy()[back])
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def evaluate_checkpoint(
    ckpt_path: str | Path,
    split: str = "test",
    output_dir: str | Path | None = None,
    *,
    cache: FeatureCache | None = None,
    batch_size: int = 256,
) -> EvaluationResult:
    """Evaluate ``ckpt_path`` on ``split`` of its cache; write the report files into ``output_dir``."""
    if split not in SPLITS:
        raise ConfigError(f"--split: '{split}' is not one of {list(SPLITS)}")
    ckpt = Path(ckpt_path)
    loaded = load_network(ckpt)
    cache = open_cache_of(loaded, cache)
    manifest = cache.manifest
    rows = manifest[manifest["split"] == split].reset_index(drop=True)
    if rows.empty:
        raise CacheError(f"{cache.dir}: the cache has no '{split}' windows")
    if list(cache.classes) != list(loaded.classes):
        raise CacheError(f"{cache.dir}: classes {list(cache.classes)} differ from the checkpoint's")
    y_true = rows["label_index"].to_numpy().astype(np.int64)
    probs = predict_windows(loaded.net, cache.features, rows["index"].to_numpy(), batch_size)
    classes = list(loaded.classes)
    metrics = classification_metrics(y_true, probs, classes)
    metrics.update(
        {
            "clip_accuracy": clip_accuracy(rows, y_true, probs),
            "split": split,
            "checkpoint": str(ckpt),
            "classes": classes,
            "cache_hash": loaded.cache_hash,
            "model_name": loaded.model_name,
        }
    )
    out = Path(output_dir) if output_dir is not None else ckpt.parent.parent / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "metrics": write_metrics_json(metrics, out / "metrics.json"),
        "per_class": write_per_class_csv(metrics, out / "per_class.csv"),
        "confusion_matrix": plot_confusion_matrix(
            np.asarray(metrics["confusion_matrix"]),
            classes,
            out / "confusion_matrix.png",
            title=f"{split}: accuracy {metrics['accuracy']:.3f}",
        ),
    }
    wrong = misclassified_table(rows, y_true, probs, classes)
    wrong.to_csv(out / "misclassified.csv", index=False)
    files["misclassified"] = out / "misclassified.csv"
    log.info("%s on %s: accuracy %.4f macro-F1 %.4f", ckpt, split, metrics["accuracy"], metrics["macro_f1"])
    return EvaluationResult(metrics=metrics, checkpoint=ckpt, split=split, output_dir=out, files=files)


def resolve_checkpoint(run_dir: Path, checkpoint: str) -> Path:
    """``best`` / ``last`` inside the run's ``checkpoints/``, or a path."""
    if checkpoint in ("best", "last"):
        return run_dir / "checkpoints" / f"{checkpoint}.ckpt"
    return Path(checkpoint)


def evaluate_run(
    run_dir: str | Path,
    checkpoint: str = "best",
    split: str = "test",
    output_dir: str | Path | None = None,
    batch_size: int = 256,
) -> EvaluationResult:
    """Evaluate a run directory's checkpoint (report in ``RUN_DIR/evaluation/<ckpt>-<split>`` by default)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"{run}: run directory not found")
    ckpt = resolve_checkpoint(run, checkpoint)
    name = checkpoint if checkpoint in ("best", "last") else ckpt.stem
    out = Path(output_dir) if output_dir is not None else run / "evaluation" / f"{name}-{split}"
    return evaluate_checkpoint(ckpt, split, out, batch_size=batch_size)
