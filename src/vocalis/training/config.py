"""Composing the training configuration from the Hydra configs shipped inside the package."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from vocalis.errors import ConfigError

CONFIG_MODULE = "vocalis.configs"


def compose_config(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Compose ``config_name`` with Hydra command-line style ``overrides`` (``model=resnet18``, ``a.b=1``).

    Configs are found through the package (``initialize_config_module``), never by a relative path, so
    an installed console script composes exactly what a checkout does.
    """
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(f"config: {exc}".splitlines()[0]) from None
    return cfg


def load_run_config(run_dir: str | Path) -> DictConfig:
    """The resolved ``config.yaml`` saved in a run directory."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: not a run directory (no config.yaml)")
    cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: not a mapping")
    return cfg
