"""Fixtures: a tiny but real run directory (tone recordings, a feature-cache manifest, the compact network
trained on them for a few epochs) and its exported artifacts, built once per pytest session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))

from runfactory import shared_artifact, shared_run


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory with checkpoints/{best,last}.ckpt, metrics.json, run.json and a cache manifest."""
    return shared_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def fp32_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run exported in fp32."""
    return shared_artifact(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def int8_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run exported in int8 (static quantization, passed the gate)."""
    return shared_artifact(tmp_path_factory.getbasetemp(), "int8")
