"""The Hydra configs shipped inside the package, and the one way to compose them.

Configs are found through the package (``initialize_config_module("vocalis.configs")``), never by a
relative path, so an installed console script composes exactly what a checkout does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from vocalis.errors import ConfigError

if TYPE_CHECKING:
    from omegaconf import DictConfig

CONFIG_MODULE = "vocalis.configs"


def compose_config(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Compose ``config_name`` with Hydra command-line style ``overrides`` (``model=resnet18``, ``a.b=1``).

    Raises:
        ConfigError: an unknown group option or key, or a malformed override (Hydra's message on one line).
    """
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        # one line, without Hydra's listing of its search path
        message = " ".join(str(exc).split()).split(" Config search path:")[0]
        raise ConfigError(f"config: {message}") from None
