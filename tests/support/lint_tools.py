"""Run the offline checkers of `make lint` (hadolint, actionlint, check-jsonschema) from the tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """The path of a checker installed in this interpreter's environment (the dev group), else on PATH."""
    local = BIN / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name}: not installed (it comes with the dev group: make sync)")
    return found


def run_tool(name: str, *args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run a checker and return its exit status and output (no exception on failure: the tests read it)."""
    return subprocess.run(
        [tool(name), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
