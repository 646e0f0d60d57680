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


#: optimizer and scheduler settings that must be numbers: a typo such as ``optimizer.lr=abc`` otherwise
#: reaches torch inside the trainer, after the data is prepared, as a TypeError traceback
_NUMERIC_KEYS = frozenset(
    {"lr", "weight_decay", "momentum", "eps", "dampening", "alpha", "gamma", "step_size", "T_max", "eta_min"}
    | {"max_lr", "pct_start", "factor", "patience", "min_lr", "warmup_epochs", "total_steps"}
)


def check_numbers(cfg: DictConfig) -> None:
    """Refuse a non-numeric value of a numeric optimizer/scheduler setting with :class:`ConfigError`."""
    for group in ("optimizer", "scheduler"):
        section = cfg.get(group)
        if not isinstance(section, DictConfig):
            continue
        for key in section:
            if str(key) not in _NUMERIC_KEYS:
                continue
            value = OmegaConf.select(section, str(key), throw_on_resolution_failure=False)
            if value is None and str(key) in ("step_size", "T_max", "total_steps"):
                continue  # filled in by the trainer when left empty
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{group}.{key!s}: must be a number, got {value!r}")
