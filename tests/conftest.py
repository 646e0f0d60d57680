"""Fixtures shared by the training, model and evaluation tests: a tiny synthetic data set prepared by the
real data stage, and the overrides that train on it."""

from __future__ import annotations

from pathlib import Path

import pytest


def _overrides(root: Path) -> list[str]:
    """A 3-class x 12-clip synthetic set, 1 s windows, a tiny CNN, no tracker, no progress bar."""
    return [
        "experiment=demo",
        f"paths.root_dir={root}",
        f"data.root={root / 'synth'}",
        "data.synth.classes=3",
        "data.synth.per_class=12",
        "data.window_s=1.0",
        "data.hop_s=1.0",
        "data.prepare_workers=1",
        "data.batch_size=8",
        "trainer.max_epochs=5",
        "callbacks=minimal",
        "logger=none",
    ]


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project root whose tiny synthetic set and feature cache are already prepared."""
    pytest.importorskip("lightning")
    from vocalis.training.config import compose_config
    from vocalis.training.train import prepare_data

    root = tmp_path_factory.mktemp("tiny")
    prepare_data(compose_config(_overrides(root)))
    return root


@pytest.fixture(scope="session")
def tiny_overrides(tiny_root: Path) -> list[str]:
    """Overrides that train on the tiny prepared set (add ``run_dir=`` and what the test varies)."""
    return _overrides(tiny_root)
