"""``profiler=simple|advanced|pytorch`` writes its report into the run directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from vocalis.training.config import compose_config
from vocalis.training.train import train


@pytest.mark.slow
@pytest.mark.parametrize("profiler", ["simple", "advanced", "pytorch"])
def test_profiler_report_lands_in_the_run_directory(
    profiler: str, tmp_path: Path, tiny_overrides: list[str]
) -> None:
    run = tmp_path / "run"
    overrides = [
        *tiny_overrides,
        f"profiler={profiler}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        f"run_dir={run}",
    ]
    assert train(compose_config(overrides)) is not None
    reports = [p for p in (run / "profiler").rglob("*") if p.is_file() and p.stat().st_size > 0]
    assert reports, f"no {profiler} profiler report"
