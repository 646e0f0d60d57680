"""Fixtures of the data-stage tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.data import write_tree


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small class-per-folder tree with two broken files."""
    return write_tree(tmp_path / "tree")
