"""Composing the training configuration from the Hydra configs shipped inside the package."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from vocalis.configs import CONFIG_MODULE, compose_config
from vocalis.errors import ConfigError

__all__ = ["CONFIG_MODULE", "compose_config", "load_run_config"]


def load_run_config(run_dir: str | Path) -> DictConfig:
    """The resolved ``config.yaml`` saved in a run directory."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: not a run directory (no config.yaml)")
    cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: not a mapping")
    return cfg
