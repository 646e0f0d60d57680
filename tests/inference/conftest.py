"""Fixtures: an exported artifact of a tiny, really trained run (runfactory.py), built once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runfactory import shared_artifact, shared_run


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory with checkpoints, metrics.json, run.json and a cache manifest."""
    return shared_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run exported in fp32 (16 kHz, 1 s windows, hop 0.5 s, classes alpha/beta/gamma)."""
    return shared_artifact(tmp_path_factory.getbasetemp())
