"""The Hydra configs shipped inside the package, and the one way to compose them.

Configs are found through the package (``initialize_config_module("vocalis.configs")``), never by a
relative path, so an installed console script composes exactly what a checkout does.

Resolvers the configs use (registered by :func:`compose_config`):

- ``${vocalis.basename:PATH}``: the last part of a path (the run directory's name names tracker runs);
- ``${vocalis.file_uri:PATH}``: an absolute ``file://`` URI for a local path (URIs pass unchanged);
- ``${vocalis.abs_sqlite:URI}``: a ``sqlite:///relative.db`` URI made absolute, so every process, a
  resumed run and ``mlflow ui`` find the same store.

Each passes null through, so a config composed before the run directory is known still resolves.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vocalis.errors import ConfigError

if TYPE_CHECKING:
    from omegaconf import DictConfig

CONFIG_MODULE = "vocalis.configs"


def _basename(path: str | None) -> str | None:
    return None if path is None else Path(str(path)).name


def _file_uri(path: str | None) -> str | None:
    if path is None or "://" in str(path):
        return path
    return Path(str(path)).expanduser().resolve().as_uri()


def _abs_sqlite(uri: str | None) -> str | None:
    prefix = "sqlite:///"
    if uri is None or not uri.startswith(prefix) or uri[len(prefix) :].startswith("/"):
        return uri
    return prefix + str(Path(uri[len(prefix) :]).resolve())


def register_resolvers() -> None:
    """Register the ``vocalis.*`` OmegaConf resolvers (idempotent)."""
    from omegaconf import OmegaConf

    for name, fn in (
        ("vocalis.basename", _basename),
        ("vocalis.file_uri", _file_uri),
        ("vocalis.abs_sqlite", _abs_sqlite),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def compose_config(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Compose ``config_name`` with Hydra command-line style ``overrides`` (``model=resnet18``, ``a.b=1``).

    Raises:
        ConfigError: an unknown group option or key, or a malformed override (Hydra's message on one line).
    """
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        # one line, without Hydra's listing of its search path
        message = " ".join(str(exc).split()).split(" Config search path:")[0]
        raise ConfigError(f"config: {message}") from None
