"""Tracking a run that has no Lightning Trainer: the transfer head's runs.

A neural training run logs through Lightning's loggers, which its Trainer drives. A transfer head is fitted
by scikit-learn in a few seconds and logs a handful of numbers and files; importing Lightning for that
(through torchmetrics and torchvision) cost about 6 s of one core on this project's 2-core machine, as
much as the head's fit. So :func:`open_trackers` reads the same ``logger`` group and talks to the services
directly where that is simple:

- ``lightning.pytorch.loggers.MLFlowLogger`` entries: MLflow's own client, with the entry's experiment
  name, run name, tracking URI, artifact location and tags (the same run as the Lightning logger makes:
  parameters, metrics, files, a finished status);
- ``lightning.pytorch.loggers.CSVLogger`` entries: ``<save_dir>/<name>/<version>/metrics.csv`` and
  ``hparams.yaml``, as Lightning's CSV logger writes them;
- any other entry (Weights & Biases, TensorBoard, a class of the user's): its Lightning logger, built
  from the entry and adapted to :class:`Tracker` (Lightning is imported then, and only then).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf

from vocalis.training.config import build_target, config_targets

MLFLOW_LOGGER = "lightning.pytorch.loggers.MLFlowLogger"
CSV_LOGGER = "lightning.pytorch.loggers.CSVLogger"
#: MLflow's limit on a parameter's value (characters) and on the parameters of one batch call
_PARAM_CHARS = 6000
_PARAM_BATCH = 100


class Tracker(Protocol):
    """Where a run's parameters, final metrics and files go."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record the run's configuration (flat ``a/b: value`` pairs)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Record metric values at ``step``."""

    def log_files(self, paths: Sequence[Path]) -> None:
        """Attach files to the run (where the service stores files)."""

    def finish(self, ok: bool = True) -> None:
        """Close the run as finished (``ok``) or failed."""


class MlflowTracker:
    """One MLflow run through :class:`mlflow.MlflowClient`, from an ``MLFlowLogger`` entry's settings."""

    def __init__(
        self,
        experiment_name: str = "lightning_logs",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        tags: Mapping[str, Any] | None = None,
        artifact_location: str | None = None,
        run_id: str | None = None,
        **_lightning_only: Any,  # log_model, prefix, save_dir...: settings of the Lightning logger's own
    ) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri)
        if run_id:  # a resumed run continues its MLflow run
            self.run_id = run_id
            return
        experiment = self.client.get_experiment_by_name(experiment_name)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else self.client.create_experiment(experiment_name, artifact_location=artifact_location)
        )
        run = self.client.create_run(
            experiment_id, run_name=run_name, tags={str(k): str(v) for k, v in (tags or {}).items()}
        )
        self.run_id = run.info.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Parameters in batches (values cut to MLflow's limit)."""
        from mlflow.entities import Param

        items = [Param(str(k), str(v)[:_PARAM_CHARS]) for k, v in params.items()]
        for i in range(0, len(items), _PARAM_BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + _PARAM_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Metric values in one batch, stamped now."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(str(k), float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def log_files(self, paths: Sequence[Path]) -> None:
        """Each file into the run's artifacts."""
        for path in paths:
            self.client.log_artifact(self.run_id, str(path))

    def finish(self, ok: bool = True) -> None:
        """The run's status: FINISHED or FAILED."""
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


class CsvTracker:
    """``metrics.csv`` (a ``step`` column and one per metric) and ``hparams.yaml`` in
    ``<save_dir>/<name>/<version>``, the layout of Lightning's ``CSVLogger``."""

    def __init__(self, save_dir: str, name: str = "lightning_logs", version: Any = "", **_: Any) -> None:
        self.dir = Path(save_dir) / str(name or "") / str(version if version is not None else "")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, Any]] = []

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Write ``hparams.yaml``."""
        OmegaConf.save(OmegaConf.create({str(k): v for k, v in params.items()}), self.dir / "hparams.yaml")

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Add a row and rewrite ``metrics.csv`` (a handful of rows)."""
        self.rows.append({"step": step, **{str(k): float(v) for k, v in metrics.items()}})
        columns = list(dict.fromkeys(k for row in self.rows for k in row))
        with (self.dir / "metrics.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)

    def log_files(self, paths: Sequence[Path]) -> None:
        """Nothing: the files are in the run directory already."""

    def finish(self, ok: bool = True) -> None:
        """Nothing left to write."""


class LightningTracker:
    """Any other Lightning logger (W&B, TensorBoard, ...) behind :class:`Tracker`."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def log_params(self, params: Mapping[str, Any]) -> None:
        """The logger's hyperparameters."""
        self.logger.log_hyperparams(dict(params))

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """The logger's metrics."""
        self.logger.log_metrics(dict(metrics), step=step)

    def log_files(self, paths: Sequence[Path]) -> None:
        """Nothing: these loggers keep no files of a run's that vocalis hands them."""

    def finish(self, ok: bool = True) -> None:
        """Finalize the logger."""
        self.logger.finalize("success" if ok else "failed")


def open_trackers(cfg: DictConfig) -> list[Tracker]:
    """A :class:`Tracker` for each entry of ``cfg.logger`` (none with ``logger=none``).

    :class:`ConfigError` names the entry that cannot be built and why.
    """
    own = {MLFLOW_LOGGER: MlflowTracker, CSV_LOGGER: CsvTracker}  # built from the entry's settings
    trackers: list[Tracker] = []
    for key, node in config_targets(cfg, "logger").items():
        cls = own.get(str(node._target_))
        if cls is not None:
            target = f"{cls.__module__}.{cls.__qualname__}"
            trackers.append(build_target(f"logger.{key}", node, _target_=target))
        else:
            trackers.append(LightningTracker(build_target(f"logger.{key}", node)))
    return trackers
