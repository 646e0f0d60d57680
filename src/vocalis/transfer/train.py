"""``vocalis train experiment=transfer_*``: a head on cached backbone embeddings, in a normal run directory.

The run directory holds what every run holds (``config.yaml``, ``classes.json``, ``metrics.json`` with the
test evaluation, ``per_class.csv``, ``confusion_matrix.png``, ``misclassified.csv``, ``run.json``,
``train.log``) and, instead of Lightning checkpoints, ``checkpoints/head.npz`` (the head) and
``transfer.json`` (the backbone and the embedding cache it was trained on). Tracking follows the same
``logger`` group (MLflow by default), through :mod:`vocalis.training.tracking`. The head's regularisation is
chosen on the validation split.

Few-shot: ``data.max_per_class=N`` keeps N training recordings per class (and at most N validation
recordings per class), drawn with ``seed`` by :func:`vocalis.data.splits.few_shot_indices` (the same draw
as a from-scratch run's); all their windows are used. The test split is never reduced.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from vocalis.data.splits import check_max_per_class, few_shot_indices
from vocalis.errors import ConfigError
from vocalis.transfer.backbones import ARTIFACT_PREFIX
from vocalis.transfer.cache import EmbeddingCache, embed_from_config
from vocalis.transfer.heads import HEAD_FILE, Head, fit_head

log = logging.getLogger(__name__)

TRANSFER_FILE = "transfer.json"


@dataclass
class TransferResult:
    """What a transfer run produced."""

    run_dir: Path
    metrics: dict[str, Any]
    head_path: Path
    seconds: float
    embed_seconds: float
    fit_seconds: float
    cache_dir: Path
    val_macro_f1: float | None
    chosen_c: float


def is_transfer_config(cfg: DictConfig) -> bool:
    """Whether ``cfg`` describes a transfer experiment (it has a ``head`` and a ``backbone``)."""
    return cfg.get("head") is not None


def is_transfer_run(run_dir: str | Path) -> bool:
    """Whether a run directory holds a transfer head."""
    return (Path(run_dir) / TRANSFER_FILE).is_file()


def _plain(node: Any) -> dict[str, Any]:
    container: Any = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    return {str(k): v for k, v in dict(container or {}).items()}


def embed_data(cfg: DictConfig, progress: Any = None) -> EmbeddingCache:
    """Build (or find current) the embedding cache of ``cfg.data`` through ``cfg.backbone``."""
    try:
        data_cfg = _plain(OmegaConf.to_container(cfg.data, resolve=True, throw_on_missing=True))
        paths_cfg = _plain(cfg.paths)
    except Exception as exc:  # a mandatory value left unset (data.root=???) and the like
        raise ConfigError(f"config: {exc}".splitlines()[0]) from None
    backbone = None
    if cfg.get("backbone") is not None:
        try:
            backbone = _plain(OmegaConf.to_container(cfg.backbone, resolve=True, throw_on_missing=True))
        except Exception:  # backbone=artifact without backbone.path=DIR
            raise ConfigError("backbone.path: no artifact given; add backbone.path=ARTIFACT_DIR") from None
    return embed_from_config(data_cfg, paths_cfg, backbone, seed=int(cfg.seed), progress=progress)


def _artifact_dir(cfg: DictConfig, cache: EmbeddingCache) -> str | None:
    """The absolute directory of the artifact the backbone is, or None (a named backbone)."""
    if not str(cache.backbone.get("name", "")).startswith(ARTIFACT_PREFIX):
        return None
    return str(Path(str(cfg.backbone.name)).expanduser().resolve())


def train_transfer(
    cfg: DictConfig, *, cache: EmbeddingCache | None = None, progress: Any = None
) -> TransferResult:
    """Embed (or reuse the cache), fit the head on train, choose C on val, test, write the run directory."""
    from vocalis.evaluation.metrics import classification_metrics, clip_accuracy
    from vocalis.evaluation.report import (
        misclassified_table,
        plot_confusion_matrix,
        write_metrics_json,
        write_per_class_csv,
    )
    from vocalis.training.config import flat_params
    from vocalis.training.rundir import RunLog, decide_run_dir, environment_summary, git_commit, write_json
    from vocalis.training.tracking import MlflowTracker, open_trackers

    t0 = time.perf_counter()
    head_cfg = _plain(cfg.head)
    kind = str(head_cfg.get("kind", "logistic"))
    cs = head_cfg.get("C", [1.0])
    cs = [float(c) for c in (cs if isinstance(cs, list) else [cs])]
    if not cs or any(c <= 0 for c in cs):
        raise ConfigError(f"head.C: positive values needed, got {cs}")
    n = check_max_per_class(cfg.data.get("max_per_class"))
    resume = cfg.get("resume")
    run_dir = decide_run_dir(cfg).resolve()
    if not resume and (run_dir / "config.yaml").exists():
        raise ConfigError(f"run_dir: {run_dir} already holds a run; choose another or resume={run_dir}")
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
    with RunLog(run_dir / "train.log"):
        if cache is None:
            cache = embed_data(cfg, progress)
        embed_seconds = cache.seconds
        log.info("embedding cache %s (%s)", cache.dir, "built" if cache.built else "current")
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
        (run_dir / "classes.json").write_text(json.dumps(list(cache.classes), indent=2) + "\n")
        trackers = open_trackers(cfg)  # MLflow through its own client: no Lightning import for a head
        for tracker in trackers:
            tracker.log_params(flat_params(cfg))

        seed = int(cfg.seed)
        manifest = cache.manifest
        emb = np.asarray(cache.embeddings)
        labels = manifest["label_index"].to_numpy().astype(np.int64)
        rows_of = few_shot_indices(manifest, n, seed)  # shared with the feature-cache DataModule
        tr, va, te = rows_of["train"], rows_of["val"], rows_of["test"]
        t1 = time.perf_counter()
        best: tuple[float, Head] | None = None
        for c in cs:
            head = fit_head(
                emb[tr],
                labels[tr],
                list(cache.classes),
                kind=kind,
                c=c,
                hidden=int(head_cfg.get("hidden") or 256),
                max_iter=int(head_cfg.get("max_iter") or 2000),
                seed=seed,
            )
            if len(va) == 0 or len(cs) == 1:
                best = (float("nan"), head)
                break
            f1 = classification_metrics(labels[va], head.probabilities(emb[va]), cache.classes)["macro_f1"]
            log.info("head %s C=%g: validation macro-F1 %.4f", kind, c, f1)
            if best is None or f1 > best[0]:
                best = (f1, head)
        assert best is not None
        val_f1, head = best
        fit_seconds = time.perf_counter() - t1
        head_path = head.save(run_dir / "checkpoints" / HEAD_FILE)

        rows = manifest.set_index("index").loc[te].reset_index()
        probs = head.probabilities(emb[te])
        y_true = labels[te]
        metrics = classification_metrics(y_true, probs, list(cache.classes))
        metrics.update(
            {
                "clip_accuracy": clip_accuracy(rows, y_true, probs),
                "split": "test",
                "checkpoint": str(head_path),
                "classes": list(cache.classes),
                "cache_hash": cache.hash,
                "model_name": f"{cache.backbone['name']}+{kind}",
                "n_train_windows": len(tr),
                "n_train_clips": int(manifest.set_index("index").loc[tr]["clip_id"].nunique()),
                "max_per_class": n,
            }
        )
        write_metrics_json(metrics, run_dir / "metrics.json")
        files = {"metrics": run_dir / "metrics.json"}
        files["per_class"] = write_per_class_csv(metrics, run_dir / "per_class.csv")
        files["confusion_matrix"] = plot_confusion_matrix(
            np.asarray(metrics["confusion_matrix"]),
            list(cache.classes),
            run_dir / "confusion_matrix.png",
            title=f"test: accuracy {metrics['accuracy']:.3f}",
        )
        misclassified_table(rows, y_true, probs, list(cache.classes)).to_csv(
            run_dir / "misclassified.csv", index=False
        )
        files["misclassified"] = run_dir / "misclassified.csv"
        write_json(
            run_dir / TRANSFER_FILE,
            {
                "backbone": cache.backbone,
                "backbone_config": _plain(cfg.backbone),
                # a vocalis artifact as the backbone: where it is (export composes its graph with the head)
                "backbone_artifact": _artifact_dir(cfg, cache),
                "head": {"kind": kind, "C": head.params["C"], "C_grid": cs, "val_macro_f1": val_f1},
                "cache_dir": str(cache.dir),
                "cache_hash": cache.hash,
                "window_s": float(cache.params["window_s"]),
                "hop_s": float(cache.params["hop_s"]),
            },
        )
        seconds = time.perf_counter() - t0
        write_json(
            run_dir / "run.json",
            {
                "run_dir": str(run_dir),
                "name": run_dir.name,
                "git_commit": git_commit(),
                "cache_hash": cache.hash,
                "cache_dir": str(cache.dir),
                "model": metrics["model_name"],
                "seconds": round(seconds, 2),
                "embed_seconds": round(embed_seconds, 2),
                "fit_seconds": round(fit_seconds, 3),
                "resumed": bool(resume),
                # the registry logs the model into this run (as for a network's run)
                "mlflow_run_id": next((t.run_id for t in trackers if isinstance(t, MlflowTracker)), None),
                "environment": environment_summary("cpu"),
            },
        )
        flat = {
            "test/acc": metrics["accuracy"],
            "test/macro_f1": metrics["macro_f1"],
            "test/balanced_acc": metrics["balanced_accuracy"],
        }
        for tracker in trackers:
            tracker.log_metrics(flat, step=0)
            tracker.log_files([*files.values(), head_path])  # MLflow: the report and the head
            tracker.finish()
        log.info("transfer head: test accuracy %.4f macro-F1 %.4f", metrics["accuracy"], metrics["macro_f1"])
    return TransferResult(
        run_dir=run_dir,
        metrics=metrics,
        head_path=head_path,
        seconds=seconds,
        embed_seconds=embed_seconds,
        fit_seconds=fit_seconds,
        cache_dir=Path(cache.dir),
        val_macro_f1=None if np.isnan(val_f1) else float(val_f1),
        chosen_c=float(head.params["C"]),
    )
