"""Fixtures of the data-stage tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from data_support import write_tree


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small class-per-folder tree with two broken files."""
    return write_tree(tmp_path / "tree")
