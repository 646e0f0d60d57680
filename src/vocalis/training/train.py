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
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, Timer
from lightning.pytorch.loggers import Logger, MLFlowLogger
from omegaconf import DictConfig, OmegaConf, open_dict

from vocalis.errors import ConfigError, DatasetError
from vocalis.training.config import build_target, config_targets, flat_params, resolve_resume
from vocalis.training.rundir import (
    RUN_DIR_ENV,
    RunLog,
    decide_run_dir,
    environment_summary,
    git_commit,
    is_ddp_child,
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
    #: True when ``trainer.max_time`` stopped training before ``trainer.max_epochs``
    stopped_by_max_time: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _plain(node: Any) -> Any:
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    return node


def build_loggers(cfg: DictConfig, mlflow_run_id: str | None = None) -> list[Logger]:
    """The Lightning loggers of ``cfg.logger``, built by ``_target_``.

    ``mlflow_run_id``: continue that MLflow run (a resumed run) instead of starting one.
    """
    loggers: list[Logger] = []
    for key, node in config_targets(cfg, "logger").items():
        resume = {"run_id": mlflow_run_id} if mlflow_run_id and "MLFlowLogger" in str(node._target_) else {}
        loggers.append(build_target(f"logger.{key}", node, **resume))
    return loggers


def build_callbacks(cfg: DictConfig, extra: list[Callback] | None = None) -> list[Callback]:
    """The Lightning callbacks of ``cfg.callbacks`` (best/last checkpoints, early stopping, progress bar)
    built by ``_target_``, then ``extra``."""
    nodes = config_targets(cfg, "callbacks", strict=False)
    callbacks = [build_target(f"callbacks.{key}", node) for key, node in nodes.items()]
    return callbacks + list(extra or [])


def build_module(cfg: DictConfig, cache: Any, datamodule: Any) -> Any:
    """The :class:`VocalisClassifier` for this config and cache."""
    from vocalis.data.datamodule import inverse_frequency_weights
    from vocalis.models import model_name
    from vocalis.training.config import check_numbers
    from vocalis.training.module import VocalisClassifier

    check_numbers(cfg)
    if len(cache.classes) < 2:
        raise DatasetError(
            f"{cfg.data.get('root', 'the dataset')}: only one class ({', '.join(cache.classes) or 'none'}) "
            "in the data; a classifier needs at least two"
        )
    tr = cfg.training
    imbalance = str(tr.imbalance)
    if imbalance not in ("none", "class_weights", "sampler"):
        raise ConfigError(f"training.imbalance: '{imbalance}' is not one of none, class_weights, sampler")
    weights = (
        inverse_frequency_weights(datamodule.train_labels, len(cache.classes))
        if imbalance == "class_weights"
        else None
    )
    optimizer = instantiate(cfg.optimizer) if cfg.get("optimizer") else None
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    shape = {"n_classes": len(cache.classes), "n_mels": datamodule.n_mels, "n_frames": datamodule.n_frames}
    model_kwargs = {str(k): v for k, v in (_plain(cfg.model) or {}).items() if not str(k).startswith("_")}
    return VocalisClassifier(
        net=build_target("model", cfg.model, **shape),
        model_name=model_name(str(cfg.model._target_)),
        model_kwargs=model_kwargs,
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
        label_smoothing=float(tr.label_smoothing),
        class_weights=weights,
        augment=_plain(tr.augment),
        channels_last=bool(cfg.trainer.channels_last),
        compile=bool(cfg.compile),
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
    run_dir = decide_run_dir(cfg).resolve()
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
    accelerator = str(trainer_kw["accelerator"])
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    ld = cfg.loader
    pin = on_gpu if ld.pin_memory is None else bool(ld.pin_memory)
    dm = CacheDataModule(
        cache,
        batch_size=int(ld.batch_size),
        eval_batch_size=int(ld.eval_batch_size),
        num_workers=int(ld.num_workers),
        pin_memory=pin,
        persistent_workers=bool(ld.persistent_workers),
        balanced_sampler=str(cfg.training.imbalance) == "sampler",
        seed=int(cfg.seed),
        max_per_class=cfg.data.get("max_per_class"),  # few-shot: the draw transfer heads use
    )
    module = build_module(cfg, cache, dm)

    run_json_path = run_dir / "run.json"
    previous: dict[str, Any] = {}
    if resume and run_json_path.is_file():
        previous = json.loads(run_json_path.read_text())
    run_name = run_dir.name
    loggers = [] if child else build_loggers(cfg, previous.get("mlflow_run_id"))
    if not child:
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
        (run_dir / "classes.json").write_text(json.dumps(list(cache.classes), indent=2) + "\n")
        for lg in loggers:
            lg.log_hyperparams(flat_params(cfg))

    profiler = build_target("profiler", cfg.profiler) if cfg.get("profiler") else None
    trainer = L.Trainer(
        **trainer_kw,
        default_root_dir=str(run_dir),
        logger=loggers or False,
        callbacks=build_callbacks(cfg, extra_callbacks),
        profiler=profiler,
        enable_checkpointing=True,
        # Lightning adds a tqdm bar of its own unless told there is none
        enable_progress_bar=bool(cfg.callbacks.get("progress_bar")),
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
    max_time = cfg.trainer.get("max_time")
    stopped_by_max_time = _stopped_by_max_time(trainer, int(cfg.trainer.max_epochs))
    if stopped_by_max_time:
        log.warning(
            "trainer.max_time=%s stopped training after %d of %d epochs: this run's result depends on "
            "how fast the machine was",
            max_time,
            trainer.current_epoch,
            cfg.trainer.max_epochs,
        )
    write_json(
        run_json_path,
        {
            "run_dir": str(run_dir),
            "name": run_name,
            "git_commit": git_commit(),
            "cache_hash": cache.hash,
            "cache_dir": str(Path(cache.dir).resolve()),
            "model": module.hparams["model_name"],
            "epochs": int(trainer.current_epoch),
            "max_epochs": int(cfg.trainer.max_epochs),
            # the opt-in wall-clock guard and whether it ended training (then the epochs vary by machine)
            "max_time": max_time,
            "stopped_by_max_time": stopped_by_max_time,
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
        stopped_by_max_time=stopped_by_max_time,
        extra={"trainer": trainer},
    )


def _stopped_by_max_time(trainer: L.Trainer, max_epochs: int) -> bool:
    """Did Lightning's ``Timer`` (added for ``trainer.max_time``) end training before ``max_epochs``?"""
    timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)  # type: ignore[attr-defined]
    if timer is None or trainer.current_epoch >= max_epochs:
        return False
    remaining = timer.time_remaining()
    return remaining is not None and remaining <= 0
