"""Build a session fixture's files once for the whole test session, also when pytest-xdist runs it in
several worker processes.

Without xdist a session fixture runs once. With ``-n 2`` each worker has its own session, so an expensive
fixture (a real training run, an export) would run once per worker. :func:`build_once` builds it in the
directory all workers share (the parent of each worker's base temp directory), under a file lock: the first
worker builds, the others wait and reuse the result.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

__all__ = ["build_once"]


def _shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """The folder every xdist worker of this session sees, or None when xdist is not running."""
    base = tmp_path_factory.getbasetemp()
    # xdist gives each worker the base temp ``<session base>/popen-gwN``
    return base.parent if base.name.startswith("popen-gw") else None


def build_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Path]) -> Path:
    """Return ``build(folder)``'s path, calling ``build`` once per test session across xdist workers.

    ``build`` gets an empty folder of its own and returns the path of what it made (inside that folder).
    A build that raised leaves no record, so the next worker tries again and reports the same error.
    """
    root = _shared_root(tmp_path_factory)
    if root is None:
        return build(tmp_path_factory.mktemp(name))
    record = root / f"{name}.built.json"
    with FileLock(str(root / f"{name}.lock")):
        if record.exists():
            return Path(json.loads(record.read_text())["path"])
        folder = root / f"{name}.d"
        shutil.rmtree(folder, ignore_errors=True)  # what a failed build left behind
        folder.mkdir()
        made = build(folder)
        record.write_text(json.dumps({"path": str(made)}))
        return made
