"""Fixtures of the registry tests: two really trained artifacts (a good one and a deliberately worse one,
one epoch of training) and a real MLflow SQLite store shared by the flow tests.

The runs come from the inference tests' run factory (plain-torch training of the compact network on
synthetic calls written as WAV files) and go through the project's exporter, ``export_artifact``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("mlflow")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))

from runfactory import make_run


def _artifact(base: Path, **run_kwargs: int) -> Path:
    from vocalis.export.onnx import export_artifact

    out = base / "artifact"
    if not (out / "model.json").is_file():
        export_artifact(make_run(base, **run_kwargs), out)
    return out


@pytest.fixture(scope="session")
def good_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 epochs on the tiny 3-class set: test accuracy well above the gate's floors."""
    return _artifact(tmp_path_factory.mktemp("good"))


@pytest.fixture(scope="session")
def worse_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch, another seed: a candidate the gate must refuse."""
    return _artifact(tmp_path_factory.mktemp("worse"), epochs=1, seed=1)


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tracking URI of a fresh MLflow SQLite store (tables created once)."""
    from vocalis.registry.registry import Registry

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    Registry(uri)
    return uri


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local cache of downloaded model versions."""
    return tmp_path_factory.mktemp("model-cache")
