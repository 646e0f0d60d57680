"""Composition of the packaged Hydra configs, and what Hydra builds from them by ``_target_``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger
from omegaconf import OmegaConf, open_dict

from vocalis.data.prepare import PrepareSettings
from vocalis.errors import ConfigError
from vocalis.features import FeatureParams
from vocalis.training.callbacks import LastCheckpoint
from vocalis.training.config import compose_config
from vocalis.training.train import _TRAINER_EXTRAS, build_callbacks, build_loggers


def _options(group: str) -> list[str]:
    root = resources.files("vocalis.configs") / group
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


GROUPS = [
    "model",
    "optimizer",
    "scheduler",
    "trainer",
    "logger",
    "callbacks",
    "profiler",
    "experiment",
    "hparams_search",
]
SOURCES = [o for o in _options("data") if o != "base"]


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_option_composes_and_resolves(group: str) -> None:
    options = _options(group)
    assert options, f"no options in config group {group}"
    for option in options:
        cfg = compose_config([f"{group}={option}", "++data.root=/tmp/x", "++backbone.path=/tmp/artifact"])
        # resolving catches broken interpolations; data.root and backbone.path (the mandatory `???` of
        # backbone=artifact) stand in for user values
        OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("source", SOURCES)
def test_every_data_source_gives_prepare_every_setting(source: str) -> None:
    """The base config carries every setting, so the data stage reads each source without fallbacks."""
    cfg = compose_config([f"data={source}", "++data.root=/r", "++data.manifest=/m.csv", "seed=7"])
    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert isinstance(data, dict)
    settings = PrepareSettings.from_config({str(k): v for k, v in data.items()})
    assert settings.name == source and settings.split_seed == 7  # ${seed} reaches the split
    # the window and featurizer come from the config, which matches the featurizer's own defaults
    assert (settings.window_s, settings.hop_s) == (data["window_s"], data["hop_s"])
    assert FeatureParams(**data["features"]) == FeatureParams()
    for key in ("batch_size", "num_workers", "chunk_size", "prepare_batch_size"):
        assert data[key] is not None, key


@pytest.mark.parametrize("option", _options("model"))
def test_every_model_option_builds_a_network_that_its_recorded_name_rebuilds(option: str) -> None:
    import torch
    from hydra.utils import instantiate

    from vocalis.models import build_model, model_name

    spec = compose_config([f"model={option}"]).model
    net = instantiate(spec, n_classes=4, n_mels=32, n_frames=40)
    kwargs = {str(k): v for k, v in spec.items() if not str(k).startswith("_")}
    again = build_model(model_name(str(spec._target_)), 4, 32, 40, **kwargs)
    shapes = {k: v.shape for k, v in net.state_dict().items()}
    assert shapes == {k: v.shape for k, v in again.state_dict().items()}
    assert net(torch.zeros(2, 1, 32, 40)).shape == (2, 4)


@pytest.mark.parametrize("option", _options("trainer"))
def test_every_trainer_option_is_lightning_trainer_arguments(option: str, tmp_path: Path) -> None:
    kw = OmegaConf.to_container(compose_config([f"trainer={option}"]).trainer, resolve=True)
    assert isinstance(kw, dict)
    for key in _TRAINER_EXTRAS:
        kw.pop(key)
    # construct (not fit) on the CPU: an unknown key or a bad value fails here
    kw["accelerator"] = "cpu"
    L.Trainer(**kw, default_root_dir=str(tmp_path), logger=False, enable_progress_bar=False)


def test_default_callbacks_write_the_run_layout_and_stop_on_the_checkpoint_metric(tmp_path: Path) -> None:
    cfg = compose_config(["callbacks.checkpoint.monitor=val/macro_f1", f"run_dir={tmp_path}"])
    callbacks = build_callbacks(cfg)
    best = next(c for c in callbacks if isinstance(c, ModelCheckpoint))
    last = next(c for c in callbacks if isinstance(c, LastCheckpoint))
    stop = next(c for c in callbacks if isinstance(c, EarlyStopping))
    assert Path(str(best.dirpath)) == tmp_path / "checkpoints" and best.filename == "best"
    assert last.path == tmp_path / "checkpoints" / "last.ckpt"
    assert stop.monitor == "val/macro_f1"  # early stopping follows the checkpoint's metric
    assert any(isinstance(c, ProgressBar) for c in callbacks)

    minimal = build_callbacks(compose_config(["callbacks=minimal", f"run_dir={tmp_path}"]))
    assert not any(isinstance(c, EarlyStopping | ProgressBar) for c in minimal)


def test_loggers_are_built_under_the_run_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "demo-1"
    cfg = compose_config(["logger=[mlflow,csv,tensorboard]", f"run_dir={run}"])
    loggers = {type(lg): lg for lg in build_loggers(cfg)}
    assert set(loggers) == {MLFlowLogger, CSVLogger, TensorBoardLogger}
    assert Path(loggers[CSVLogger].log_dir) == run / "csv"
    assert Path(loggers[TensorBoardLogger].log_dir) == run / "tensorboard"
    mlflow = loggers[MLFlowLogger]
    # the relative default store becomes absolute: DDP ranks, a resume and `mlflow ui` agree on it
    assert mlflow._tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert mlflow._run_name == "demo-1"
    assert build_loggers(compose_config(["logger=none"])) == []


def test_an_entry_without_a_target_is_a_config_error(tmp_path: Path) -> None:
    cfg = compose_config([f"run_dir={tmp_path}"])
    with open_dict(cfg):
        cfg.logger.csv = {"save_dir": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"logger\.csv: has no _target_"):
        build_loggers(cfg)


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_recipe_stops_by_epochs_not_by_the_clock(experiment: str) -> None:
    """A wall-clock stop makes the result depend on machine load; recipes leave it opt-in."""
    cfg = compose_config([f"experiment={experiment}", "++data.root=/r"])
    assert cfg.trainer.max_time is None and cfg.trainer.max_epochs > 0


def test_bad_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        compose_config(["model=no_such_model"])
    with pytest.raises(ConfigError):
        compose_config(["trainer.profiler=simple"])  # profilers are their own group: profiler=simple


def test_a_recipe_tuning_a_callback_that_minimal_removed_leaves_it_out(tmp_path: Path) -> None:
    # folder_cpu sets callbacks.early_stopping.patience; callbacks=minimal had set early_stopping: null
    overrides = ["experiment=folder_cpu", "callbacks=minimal", "data.root=/r", f"run_dir={tmp_path}"]
    cfg = compose_config(overrides)
    callbacks = build_callbacks(cfg)
    assert not any(isinstance(c, EarlyStopping) for c in callbacks)
    assert any(isinstance(c, ModelCheckpoint) for c in callbacks)
