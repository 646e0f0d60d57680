"""Fixtures shared across test folders: a tiny synthetic data set prepared by the real data stage (training,
model and evaluation tests) and one tiny run of the real trainer with its exported artifacts (export,
prediction)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.shared import build_once


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files with tests marked ``slow`` first, each file's tests kept together and in order.

    `make test` hands whole files to the xdist workers in collection order (``--dist loadfile
    --no-loadscope-reorder``): the long end-to-end files start first and the many quick files fill the gaps
    at the end, instead of one long file running alone on one worker while the others are done (xdist's own
    order puts the files with the fewest tests, often the longest end-to-end ones, last)."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: the order inside each group stays


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

    def build(root: Path) -> Path:
        prepare_data(compose_config(_overrides(root)))
        return root

    return build_once(tmp_path_factory, "tiny", build)


@pytest.fixture(scope="session")
def tiny_overrides(tiny_root: Path) -> list[str]:
    """Overrides that train on the tiny prepared set (add ``run_dir=`` and what the test varies)."""
    return _overrides(tiny_root)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory written by the real trainer (see :mod:`support.runs`), trained once per session."""
    pytest.importorskip("lightning")
    from support.runs import train_run

    return build_once(tmp_path_factory, "real-run", train_run)


@pytest.fixture(scope="session")
def fp32_artifact(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's run exported in fp32 (16 kHz, 1 s windows, hop 0.5 s, classes alpha/beta/gamma)."""
    from support.runs import export_run

    return build_once(tmp_path_factory, "fp32", lambda d: export_run(trained_run, d / "artifact"))


@pytest.fixture(scope="session")
def artifact(fp32_artifact: Path) -> Path:
    """The fp32 artifact of the session's run, under the name the prediction tests use."""
    return fp32_artifact


@pytest.fixture(scope="session")
def int8_artifact(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's run exported in int8 (static quantization that passed the accuracy gate)."""
    from support.runs import export_run

    return build_once(
        tmp_path_factory, "int8", lambda d: export_run(trained_run, d / "artifact", quantize="int8")
    )
