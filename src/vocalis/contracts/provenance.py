"""Where a run or an artifact came from: the git commit of the code."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The commit checked out where vocalis' source lives (or in ``cwd``), or None without git."""
    where = cwd if cwd is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha or None
