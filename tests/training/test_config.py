"""Composition of the packaged Hydra configs: every experiment and every group option."""

from __future__ import annotations

from importlib import resources

import pytest
from omegaconf import OmegaConf

from vocalis.errors import ConfigError
from vocalis.training.config import compose_config


def _options(group: str) -> list[str]:
    root = resources.files("vocalis.configs") / group
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


GROUPS = ["model", "optimizer", "scheduler", "trainer", "logger", "callbacks", "experiment", "hparams_search"]


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_option_composes_and_resolves(group: str) -> None:
    options = _options(group)
    assert options, f"no options in config group {group}"
    for option in options:
        cfg = compose_config([f"{group}={option}", "++data.root=/tmp/x"])
        # resolving catches broken interpolations; data.root/manifest stand in for user values
        OmegaConf.to_container(cfg, resolve=True)


def test_experiments_set_what_the_issue_asks() -> None:
    demo = compose_config(["experiment=demo"])
    assert demo.model.name == "compact" and demo.data.source == "synthetic" and demo.name == "demo"

    wmms = compose_config(["experiment=wmms_resnet34"])
    assert wmms.model.name == "resnet34" and wmms.data.source == "wmms"
    assert wmms.loader.batch_size == 64 and wmms.trainer.max_epochs == 30
    assert wmms.optimizer._target_ == "torch.optim.Adam" and wmms.optimizer.lr == pytest.approx(1e-3)

    folder = compose_config(["experiment=folder_cpu", "data.root=/data/x"])
    assert folder.data.source == "folder" and folder.model.name == "compact"
    csv = compose_config(["experiment=folder_cpu", "data=csv", "data.manifest=/x.csv"])
    assert csv.data.source == "csv" and csv.model.name == "compact"


def test_gpu_trainer_is_bf16_channels_last_and_ddp_is_gloo_ready() -> None:
    gpu = compose_config(["trainer=gpu", "compile=true"])
    assert gpu.trainer.precision == "bf16-mixed" and gpu.trainer.channels_last and gpu.compile
    ddp = compose_config(["trainer=ddp"])
    assert ddp.trainer.strategy == "ddp" and ddp.trainer.devices == 2 and ddp.trainer.accelerator == "cpu"


def test_bad_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        compose_config(["model=no_such_model"])
