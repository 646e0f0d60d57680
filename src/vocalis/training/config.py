"""Composing the training configuration from the Hydra configs shipped inside the package."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from vocalis.configs import CONFIG_MODULE, compose_config
from vocalis.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "CONFIG_MODULE",
    "build_target",
    "compose_config",
    "config_targets",
    "flat_params",
    "load_run_config",
    "resolve_resume",
]


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


def resolve_resume(cfg: DictConfig) -> DictConfig:
    """``resume=RUN_DIR``: the run's own saved config (with ``resume`` set); otherwise ``cfg`` itself."""
    resume = cfg.get("resume")
    if not resume:
        return cfg
    saved = load_run_config(str(resume))
    with open_dict(saved):
        saved.resume = str(resume)
    return saved


def config_targets(cfg: DictConfig, group: str, strict: bool = True) -> dict[str, DictConfig]:
    """The non-null entries of ``cfg.<group>``, each required to name a ``_target_``.

    ``strict=False`` leaves an entry without one out with a warning instead: an experiment that tunes a
    callback (``callbacks.early_stopping.patience``) composed with ``callbacks=minimal``, which removed it.
    """
    nodes: dict[str, DictConfig] = {}
    for key, node in (cfg.get(group) or {}).items():
        if node is None:
            continue
        if not isinstance(node, DictConfig) or "_target_" not in node:
            if not strict:
                log.warning("%s.%s has no _target_ (disabled, then given settings?): left out", group, key)
                continue
            raise ConfigError(f"{group}.{key}: has no _target_ (the class to build)")
        nodes[str(key)] = node
    return nodes


def flat_params(cfg: DictConfig) -> dict[str, Any]:
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


def build_target(path: str, node: DictConfig, **kwargs: Any) -> Any:
    """Hydra's ``instantiate(node, **kwargs)``; :class:`ConfigError` names the entry (``path``, e.g.
    ``logger.mlflow``), its class and why it cannot be built."""
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except Exception as exc:  # hydra wraps the constructor's error in InstantiationException
        message = " ".join(str(exc).split())
        raise ConfigError(f"{path}: cannot build {node.get('_target_')}: {message}") from None
