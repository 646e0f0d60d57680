"""The run directory: a unique name, the saved config, run.json (provenance) and train.log."""

from __future__ import annotations

import json
import logging
import os
import platform
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vocalis.contracts.provenance import git_commit as git_commit  # run.json records it
from vocalis.errors import ConfigError

if TYPE_CHECKING:
    from omegaconf import DictConfig

#: rank 0 decides the run directory and passes it to the processes Lightning's DDP launcher starts
RUN_DIR_ENV = "VOCALIS_RUN_DIR"


def is_ddp_child() -> bool:
    """True in a process started by Lightning's DDP launcher for a rank other than 0."""
    return os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"


def new_run_name(prefix: str) -> str:
    """``<prefix>-<YYYYmmdd-HHMMSS>-<uuid8>``: unique even for runs started in the same second."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{prefix}-{stamp}-{uuid.uuid4().hex[:8]}"


def environment_summary(device: str) -> dict[str, Any]:
    """Python, torch, lightning versions, CPU count and the training device.

    Versions come from the installed packages' metadata: a run that never imports torch (a transfer head)
    does not import it for this; torch's threads and GPU are read where torch is already loaded.
    """
    import sys
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    torch = sys.modules.get("torch")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": getattr(torch, "__version__", None) or installed("torch"),
        "lightning": installed("lightning"),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "device": device,
        "cuda": torch.cuda.get_device_name(0) if torch is not None and torch.cuda.is_available() else None,
    }


def decide_run_dir(cfg: DictConfig) -> Path:
    """The run directory of ``cfg``: the DDP launcher's (rank > 0), ``resume``'s, ``run_dir``'s, or a new
    ``<paths.runs_dir>/<name>-<time>-<id>``."""
    if is_ddp_child():
        env = os.environ.get(RUN_DIR_ENV)
        if not env:
            raise ConfigError(f"DDP rank process started without {RUN_DIR_ENV}")
        return Path(env)
    if cfg.get("resume"):
        return Path(str(cfg.resume))
    if cfg.get("run_dir"):
        return Path(str(cfg.run_dir))
    return Path(str(cfg.paths.runs_dir)) / new_run_name(str(cfg.get("name") or "train"))


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write JSON atomically (a kill never leaves half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


class RunLog:
    """Copies the ``vocalis`` and ``lightning`` loggers' INFO messages into ``RUN_DIR/train.log``."""

    NAMES = ("vocalis", "lightning")
    #: lightning sets ``propagate = False`` on these when it is imported before logging is configured
    DETACHED = ("lightning.pytorch", "lightning.fabric")

    def __init__(self, path: Path) -> None:
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.handler.setLevel(logging.INFO)
        self._levels: dict[str, int] = {}
        self._names: list[str] = []

    def __enter__(self) -> RunLog:
        self._names = list(self.NAMES)
        self._names += [n for n in self.DETACHED if not logging.getLogger(n).propagate]
        for name in self._names:
            lg = logging.getLogger(name)
            self._levels[name] = lg.level
            # lightning already logs at INFO; raising our own level is what lets vocalis INFO through
            if name == "vocalis" and lg.getEffectiveLevel() > logging.INFO:
                lg.setLevel(logging.INFO)
            lg.addHandler(self.handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self._names:
            lg = logging.getLogger(name)
            lg.removeHandler(self.handler)
            lg.setLevel(self._levels.get(name, logging.NOTSET))
        self.handler.close()
