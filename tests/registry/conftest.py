"""Fixtures of the registry tests: two really trained artifacts (a good one and a deliberately worse one,
one epoch of training) and a real MLflow SQLite store shared by the flow tests.

The good one is the session's real run (``tests/conftest.py``); the worse one is trained by the same
real stages for one epoch on other calls (:mod:`support.runs`); both go through ``export_artifact``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mlflow")


@pytest.fixture(scope="session")
def good_artifact(fp32_artifact: Path) -> Path:
    """The session's real run (8 epochs on the tiny 3-class set): well above the gate's floors."""
    return fp32_artifact


@pytest.fixture(scope="session")
def worse_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of the same real stages on other calls: a candidate the gate must refuse."""
    from support.runs import export_run, train_run
    from support.shared import build_once

    return build_once(
        tmp_path_factory,
        "worse",
        lambda base: export_run(train_run(base, epochs=1, seed=1), base / "artifact"),
    )


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
