"""``vocalis train``: prepare the feature cache, train with Lightning, test the best checkpoint.

One call of :func:`train` makes one run directory (see ``docs/contracts.md``)::

    RUN_DIR/config.yaml  checkpoints/{best,last}.ckpt  metrics.json  classes.json  run.json  train.log
           confusion_matrix.png  per_class.csv  misclassified.csv

Under DDP, Lightning re-launches the command once per extra rank; rank 0 decides the run directory and
hands it to the others in ``VOCALIS_RUN_DIR``, and only rank 0 writes files, tracks and tests.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    ModelCheckpoint,
    RichProgressBar,
    TQDMProgressBar,
)
from lightning.pytorch.loggers import Logger, MLFlowLogger
from omegaconf import DictConfig, OmegaConf, open_dict

from vocalis.errors import ConfigError
from vocalis.training.config import load_run_config
from vocalis.training.rundir import (
    RUN_DIR_ENV,
    RunLog,
    environment_summary,
    git_commit,
    is_ddp_child,
    new_run_name,
    write_json,
)

log = logging.getLogger(__name__)

#: trainer config keys that are ours, not lightning.Trainer arguments
_TRAINER_EXTRAS = ("channels_last",)


@dataclass
class TrainResult:
    """What a finished run produced (rank 0 only)."""

    run_dir: Path
    metrics: dict[str, Any]
    best_checkpoint: Path
    last_checkpoint: Path
    epochs: int
    best_val: float | None
    seconds: float
    cache_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)


class LastCheckpoint(Callback):
    """``checkpoints/last.ckpt`` every ``every_n_train_steps`` steps and at each epoch end.

    Written to a temporary file and renamed, so a run killed while saving still has a readable
    ``last.ckpt`` to resume from.
    """

    def __init__(self, dirpath: Path, every_n_train_steps: int | None = 50) -> None:
        self.path = Path(dirpath) / "last.ckpt"
        self.every = int(every_n_train_steps or 0)

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.sanity_checking or getattr(trainer, "fast_dev_run", False):
            return
        tmp = self.path.with_name("last.ckpt.tmp")
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        trainer.strategy.barrier("last_checkpoint")

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        """Save every N optimisation steps (mid-epoch kills lose at most N steps)."""
        if self.every and trainer.global_step % self.every == 0 and trainer.global_step > 0:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save at the end of each epoch (after validation)."""
        self._save(trainer)


def _plain(node: Any) -> Any:
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    return node


def _abs_sqlite(uri: str) -> str:
    """``sqlite:///relative.db`` -> an absolute path, so every process and `mlflow ui` agree."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def _decide_run_dir(cfg: DictConfig) -> Path:
    if is_ddp_child():
        env = os.environ.get(RUN_DIR_ENV)
        if not env:
            raise ConfigError(f"DDP rank process started without {RUN_DIR_ENV}")
        return Path(env)
    if cfg.get("resume"):
        return Path(str(cfg.resume))
    if cfg.get("run_dir"):
        return Path(str(cfg.run_dir))
    return Path(str(cfg.paths.runs_dir)) / new_run_name(str(cfg.get("name") or "train"))


def build_loggers(cfg: DictConfig, run_dir: Path, run_name: str, mlflow_run_id: str | None) -> list[Logger]:
    """The Lightning loggers named in ``cfg.logger`` (mlflow, wandb, csv, tensorboard), all under the run."""
    specs = _plain(cfg.get("logger")) or {}
    loggers: list[Logger] = []
    for kind, kwargs in specs.items():
        kw = dict(kwargs or {})
        if kind == "mlflow":
            kw["tracking_uri"] = _abs_sqlite(str(kw.get("tracking_uri") or "sqlite:///mlflow.db"))
            loc = kw.get("artifact_location")
            if loc and "://" not in str(loc):
                kw["artifact_location"] = Path(str(loc)).resolve().as_uri()
            kw.setdefault("run_name", run_name)
            if mlflow_run_id:
                kw["run_id"] = mlflow_run_id
            loggers.append(MLFlowLogger(**kw))
        elif kind == "wandb":
            from lightning.pytorch.loggers import WandbLogger

            kw.setdefault("save_dir", str(run_dir))
            kw.setdefault("name", run_name)
            loggers.append(WandbLogger(**kw))
        elif kind == "csv":
            from lightning.pytorch.loggers import CSVLogger

            loggers.append(CSVLogger(**{"save_dir": str(run_dir), "name": "csv", "version": "", **kw}))
        elif kind == "tensorboard":
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(
                TensorBoardLogger(**{"save_dir": str(run_dir), "name": "tensorboard", "version": "", **kw})
            )
        else:
            raise ConfigError(f"logger: unknown logger '{kind}' (mlflow, wandb, csv, tensorboard)")
    return loggers


def build_callbacks(cfg: DictConfig, ckpt_dir: Path, extra: list[Callback] | None = None) -> list[Callback]:
    """Best + last checkpoints, early stopping and the progress bar from ``cfg.callbacks``."""
    cb = cfg.callbacks
    monitor = str(cb.checkpoint.monitor)
    mode = str(cb.checkpoint.mode)
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="best",
            monitor=monitor,
            mode=mode,
            save_top_k=1,
            save_last=False,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        ),
        LastCheckpoint(ckpt_dir, cb.last.every_n_train_steps),
    ]
    es = cb.get("early_stopping")
    if es:
        # a partial node (an experiment setting only the patience) falls back to the checkpoint's metric
        callbacks.append(
            EarlyStopping(
                monitor=str(es.get("monitor") or monitor),
                mode=str(es.get("mode") or mode),
                patience=int(es.get("patience", 6)),
                min_delta=float(es.get("min_delta", 0.0)),
            )
        )
    bar = str(cb.get("progress_bar") or "none")
    if bar == "rich":
        callbacks.append(RichProgressBar(leave=True))
    elif bar == "tqdm":
        callbacks.append(TQDMProgressBar())
    return callbacks + list(extra or [])


def _profiler(spec: Any, run_dir: Path) -> Any:
    if not spec:
        return None
    from lightning.pytorch import profilers

    kind = str(spec)
    out = run_dir / "profiler"
    if kind == "simple":
        return profilers.SimpleProfiler(dirpath=out, filename="simple", extended=True)
    if kind == "advanced":
        return profilers.AdvancedProfiler(dirpath=out, filename="advanced")
    if kind == "pytorch":
        return profilers.PyTorchProfiler(dirpath=out, filename="pytorch", sort_by_key="cpu_time_total")
    raise ConfigError(f"trainer.profiler: '{kind}' is not one of simple, advanced, pytorch")


def build_module(cfg: DictConfig, cache: Any, datamodule: Any) -> Any:
    """The :class:`VocalisClassifier` for this config and cache."""
    from hydra.utils import instantiate

    from vocalis.data.datamodule import inverse_frequency_weights
    from vocalis.training.module import VocalisClassifier

    tr = cfg.training
    imbalance = str(tr.get("imbalance") or "none")
    if imbalance not in ("none", "class_weights", "sampler"):
        raise ConfigError(f"training.imbalance: '{imbalance}' is not one of none, class_weights, sampler")
    weights = (
        inverse_frequency_weights(datamodule.train_labels, len(cache.classes))
        if imbalance == "class_weights"
        else None
    )
    optimizer = instantiate(cfg.optimizer) if cfg.get("optimizer") else None
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    return VocalisClassifier(
        model_name=str(cfg.model.name),
        model_kwargs=_plain(cfg.model.get("kwargs")) or {},
        classes=list(cache.classes),
        features=dict(cache.params["features"]),
        window_s=float(cache.params["window_s"]),
        hop_s=float(cache.params["hop_s"]),
        n_mels=datamodule.n_mels,
        n_frames=datamodule.n_frames,
        cache_hash=str(cache.hash),
        cache_dir=str(Path(cache.dir).resolve()),
        optimizer=optimizer,
        scheduler=scheduler,
        label_smoothing=float(tr.get("label_smoothing") or 0.0),
        class_weights=weights,
        augment=_plain(tr.get("augment")) or {},
        channels_last=bool(cfg.trainer.get("channels_last", False)),
        compile=bool(cfg.get("compile", False)),
    )


def _log_final(
    loggers: list[Logger], metrics: dict[str, Any], files: dict[str, Path], best: Path, step: int
) -> None:
    flat = {"test/acc": metrics["accuracy"], "test/macro_f1": metrics["macro_f1"]}
    flat["test/balanced_acc"] = metrics["balanced_accuracy"]
    if metrics.get("macro_auroc") is not None:
        flat["test/macro_auroc"] = metrics["macro_auroc"]
    for lg in loggers:
        lg.log_metrics(flat, step=step)
        if isinstance(lg, MLFlowLogger):
            client, run_id = lg.experiment, lg.run_id
            for path in files.values():
                client.log_artifact(run_id, str(path), artifact_path="evaluation")
            if best.is_file():
                client.log_artifact(run_id, str(best), artifact_path="checkpoints")
        lg.finalize("success")


def resolve_resume(cfg: DictConfig) -> DictConfig:
    """``resume=RUN_DIR``: the run's own saved config (with ``resume`` set); otherwise ``cfg`` itself."""
    resume = cfg.get("resume")
    if not resume:
        return cfg
    saved = load_run_config(str(resume))
    with open_dict(saved):
        saved.resume = str(resume)
    return saved


def prepare_data(cfg: DictConfig, progress: Any = None) -> Any:
    """Prepare (or find current) the feature cache of ``cfg.data``: the data stage's own code."""
    from vocalis.data.prepare import prepare_from_config

    try:
        data_cfg = OmegaConf.to_container(cfg.data, resolve=True, throw_on_missing=True)
        paths_cfg = OmegaConf.to_container(cfg.paths, resolve=True)
    except Exception as exc:  # a mandatory value left unset (data.root=???) and the like
        raise ConfigError(f"config: {exc}".splitlines()[0]) from None
    assert isinstance(data_cfg, dict) and isinstance(paths_cfg, dict)
    return prepare_from_config(
        {str(k): v for k, v in data_cfg.items()},
        {str(k): v for k, v in paths_cfg.items()},
        seed=int(cfg.seed),
        progress=progress,
    )


def train(
    cfg: DictConfig,
    *,
    cache: Any = None,
    extra_callbacks: list[Callback] | None = None,
    progress: Any = None,
) -> TrainResult | None:
    """Run one training job described by ``cfg`` (see ``vocalis/configs/config.yaml``).

    ``cache`` is the prepared feature cache (prepared here from ``cfg.data`` when None).
    ``cfg.resume=RUN_DIR`` continues that run from ``checkpoints/last.ckpt`` with the run's own saved
    config. Returns the result on rank 0 and None on the other DDP ranks.
    """
    t0 = time.perf_counter()
    child = is_ddp_child()
    cfg = resolve_resume(cfg)
    resume = cfg.get("resume")
    run_dir = _decide_run_dir(cfg).resolve()
    ckpt_dir = run_dir / "checkpoints"
    last_ckpt = ckpt_dir / "last.ckpt"
    if resume and not last_ckpt.is_file():
        raise ConfigError(f"resume: {last_ckpt} not found; nothing to resume from")
    if not child:
        if not resume and (run_dir / "config.yaml").exists():
            raise ConfigError(f"run_dir: {run_dir} already holds a run; choose another or resume={run_dir}")
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        os.environ[RUN_DIR_ENV] = str(run_dir)
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
        cfg.resume = str(resume) if resume else None

    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    if child:
        return _fit(cfg, run_dir, cache, extra_callbacks, progress, t0)
    with RunLog(run_dir / "train.log"):
        return _fit(cfg, run_dir, cache, extra_callbacks, progress, t0)


def _fit(
    cfg: DictConfig,
    run_dir: Path,
    cache: Any,
    extra_callbacks: list[Callback] | None,
    progress: Any,
    t0: float,
) -> TrainResult | None:
    from vocalis.data.datamodule import CacheDataModule
    from vocalis.evaluation.evaluate import evaluate_checkpoint

    child = is_ddp_child()
    ckpt_dir = run_dir / "checkpoints"
    resume = cfg.get("resume")
    if cache is None:
        cache = prepare_data(cfg, progress)
    log.info("feature cache %s (%s)", cache.dir, "built" if cache.built else "current")

    trainer_kw = dict(_plain(cfg.trainer))
    for key in _TRAINER_EXTRAS:
        trainer_kw.pop(key, None)
    accelerator = str(trainer_kw.get("accelerator", "cpu"))
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    ld = cfg.loader
    pin = bool(ld.pin_memory) if ld.get("pin_memory") is not None else on_gpu
    dm = CacheDataModule(
        cache,
        batch_size=int(ld.batch_size),
        eval_batch_size=int(ld.get("eval_batch_size") or ld.batch_size),
        num_workers=int(ld.num_workers),
        pin_memory=pin,
        persistent_workers=bool(ld.get("persistent_workers", True)),
        balanced_sampler=str(cfg.training.get("imbalance")) == "sampler",
        seed=int(cfg.seed),
    )
    module = build_module(cfg, cache, dm)

    run_json_path = run_dir / "run.json"
    previous: dict[str, Any] = {}
    if resume and run_json_path.is_file():
        previous = json.loads(run_json_path.read_text())
    run_name = run_dir.name
    loggers = [] if child else build_loggers(cfg, run_dir, run_name, previous.get("mlflow_run_id"))
    if not child:
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
        (run_dir / "classes.json").write_text(json.dumps(list(cache.classes), indent=2) + "\n")
        for lg in loggers:
            lg.log_hyperparams(_flat_params(cfg))

    trainer_kw["profiler"] = _profiler(trainer_kw.get("profiler"), run_dir)
    trainer = L.Trainer(
        **trainer_kw,
        default_root_dir=str(run_dir),
        logger=loggers or False,
        callbacks=build_callbacks(cfg, ckpt_dir, extra_callbacks),
        enable_checkpointing=True,
        enable_progress_bar=str(cfg.callbacks.get("progress_bar") or "none") != "none",
    )
    ckpt_path = str(ckpt_dir / "last.ckpt") if resume else None
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    if child or not trainer.is_global_zero:
        return None

    best = ckpt_dir / "best.ckpt"
    last = ckpt_dir / "last.ckpt"
    if not best.is_file():
        # fast_dev_run and runs without validation never write best.ckpt: test the final weights
        trainer.save_checkpoint(last)
        best = last
    result = evaluate_checkpoint(best, "test", run_dir, cache=cache)
    metrics = result.metrics
    mlflow_run_id = next((lg.run_id for lg in loggers if isinstance(lg, MLFlowLogger)), None)
    best_score = None
    for cb in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(cb, ModelCheckpoint) and cb.best_model_score is not None:
            best_score = float(cb.best_model_score)
    seconds = time.perf_counter() - t0 + float(previous.get("seconds") or 0.0)
    write_json(
        run_json_path,
        {
            "run_dir": str(run_dir),
            "name": run_name,
            "git_commit": git_commit(),
            "cache_hash": cache.hash,
            "cache_dir": str(Path(cache.dir).resolve()),
            "model": str(cfg.model.name),
            "epochs": int(trainer.current_epoch),
            "max_epochs": int(cfg.trainer.max_epochs),
            "global_step": int(trainer.global_step),
            "best_val": best_score,
            "monitor": str(cfg.callbacks.checkpoint.monitor),
            "seconds": round(seconds, 2),
            "resumed": bool(resume) or bool(previous.get("resumed")),
            "mlflow_run_id": mlflow_run_id,
            "environment": environment_summary(accelerator if not on_gpu else "gpu"),
        },
    )
    _log_final(loggers, metrics, result.files, best, int(trainer.global_step))
    return TrainResult(
        run_dir=run_dir,
        metrics=metrics,
        best_checkpoint=best,
        last_checkpoint=last,
        epochs=int(trainer.current_epoch),
        best_val=best_score,
        seconds=seconds,
        cache_dir=Path(cache.dir),
        extra={"trainer": trainer},
    )


def _flat_params(cfg: DictConfig) -> dict[str, Any]:
    """The config as flat ``a/b: value`` pairs for the trackers (paths and logger settings left out)."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}/")
        else:
            out[prefix.rstrip("/")] = node

    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    for key in ("paths", "logger"):
        container.pop(key, None)
    walk(container, "")
    return out
