"""``vocalis sweep``: an Optuna study over training runs, pruning on the validation metric.

Each trial is an ordinary :func:`vocalis.training.train.train` run (its own run directory and tracker
run) with the sampled values set in the config; a callback reports the validation metric to Optuna at
every validation and stops the trial when the pruner says so. The sampler and the pruner are built from
the config by ``_target_``.

The pruning callback is ours rather than ``optuna-integration``'s ``PyTorchLightningPruningCallback``:
that one raises ``TrialPruned`` from inside ``Trainer.fit``, so a pruned trial would end without its test
metrics, ``run.json`` or a finished tracker run; ours stops the trainer (``should_stop``), the trial is
tested and written like any run, and the objective then tells Optuna it was pruned.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import optuna
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from vocalis.errors import ConfigError
from vocalis.training.rundir import new_run_name, write_json
from vocalis.training.train import prepare_data, train

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    """The finished study."""

    study_name: str
    sweep_dir: Path
    best_trial: int
    best_value: float
    best_params: dict[str, Any]
    best_config: Path
    trials: list[dict[str, Any]] = field(default_factory=list)


class OptunaPruning(Callback):
    """Report ``monitor`` to the trial after every validation; stop training when the trial is pruned."""

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        self.trial = trial
        self.monitor = monitor
        self.pruned = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """``trial.report`` then ``trial.should_prune``."""
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        self.trial.report(float(value), step=trainer.current_epoch)
        if self.trial.should_prune():
            log.info("trial %d pruned at epoch %d", self.trial.number, trainer.current_epoch)
            self.pruned = trainer.should_stop = True


def suggest(trial: optuna.Trial, key: str, spec: dict[str, Any]) -> Any:
    """Draw one value of the search space entry ``spec`` for config ``key``."""
    kind = str(spec.get("type", "float"))
    if kind == "float":
        return trial.suggest_float(key, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))
    if kind == "int":
        return trial.suggest_int(key, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log")))
    if kind == "categorical":
        return trial.suggest_categorical(key, list(spec["choices"]))
    raise ConfigError(f"hparams_search.params.{key}.type: '{kind}' is not float, int or categorical")


def run_sweep(cfg: DictConfig) -> SweepResult:
    """Run the study that ``cfg.hparams_search`` describes; returns the best trial and its config."""
    hs = cfg.get("hparams_search")
    if not hs:
        raise ConfigError("hparams_search: not set; add hparams_search=optuna")
    space = OmegaConf.to_container(hs.params, resolve=True)
    if not isinstance(space, dict) or not space:
        raise ConfigError("hparams_search.params: the search space is empty")
    sweep_dir = Path(
        str(cfg.run_dir or Path(str(cfg.paths.runs_dir)) / new_run_name(str(cfg.name)))
    ).resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    cache = prepare_data(cfg)  # once, shared by every trial
    direction = str(hs.direction)
    if direction not in ("minimize", "maximize"):
        raise ConfigError(f"hparams_search.direction: '{direction}' is not minimize or maximize")
    study = optuna.create_study(
        study_name=str(hs.study_name),
        storage=str(hs.storage or f"sqlite:///{sweep_dir / 'optuna.db'}"),
        direction=optuna.study.StudyDirection[direction.upper()],
        sampler=instantiate(hs.sampler),
        pruner=instantiate(hs.pruner),
        load_if_exists=True,
    )
    metric, prune_on = str(hs.metric), str(hs.prune_on or hs.metric)
    OmegaConf.save(cfg, sweep_dir / "sweep_config.yaml", resolve=True)

    def objective(trial: optuna.Trial) -> float:
        tcfg = cfg.copy()
        params = {str(key): suggest(trial, str(key), dict(spec)) for key, spec in space.items()}
        with open_dict(tcfg):
            for key, value in params.items():
                OmegaConf.update(tcfg, key, value, force_add=True)
            tcfg.run_dir = str(sweep_dir / f"trial-{trial.number:03d}")
            tcfg.name = f"{cfg.name}-trial-{trial.number:03d}"
        pruning = OptunaPruning(trial, prune_on)
        result = train(tcfg, cache=cache, extra_callbacks=[pruning])
        assert result is not None
        value = result.extra["trainer"].callback_metrics.get(metric)
        if value is None:
            raise ConfigError(f"hparams_search.metric: '{metric}' was never logged")
        trial.set_user_attr("run_dir", str(result.run_dir))
        if pruning.pruned:
            raise optuna.TrialPruned()
        return float(value)

    study.optimize(
        objective,
        n_trials=int(hs.n_trials),
        timeout=None if hs.timeout is None else float(hs.timeout),
        gc_after_trial=True,
    )
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise ConfigError("hparams_search: no trial completed (all pruned or failed)")
    best = study.best_trial
    best_run = Path(best.user_attrs["run_dir"])
    best_config = sweep_dir / "best_config.yaml"
    shutil.copyfile(best_run / "config.yaml", best_config)
    trials = [
        {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params}
        for t in study.trials
    ]
    write_json(
        sweep_dir / "sweep.json",
        {
            "study": study.study_name,
            "metric": metric,
            "direction": str(hs.direction),
            "best_trial": best.number,
            "best_value": best.value,
            "best_params": best.params,
            "best_run_dir": str(best_run),
            "trials": trials,
        },
    )
    log.info("best trial %d: %s = %.4f %s", best.number, metric, best.value, json.dumps(best.params))
    return SweepResult(
        study_name=study.study_name,
        sweep_dir=sweep_dir,
        best_trial=best.number,
        best_value=float(best.value or 0.0),
        best_params=dict(best.params),
        best_config=best_config,
        trials=trials,
    )
