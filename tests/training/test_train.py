"""Training end to end on a tiny synthetic set prepared by the real data stage.

Tolerances: the learning test asks for test accuracy >= 0.6 on 3 balanced classes (chance 0.33); the
determinism test asks for identical metrics (same seed, data and config on the CPU, deterministic=True).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from vocalis.errors import ConfigError
from vocalis.models.checkpoint import load_network
from vocalis.training.config import compose_config
from vocalis.training.rundir import new_run_name
from vocalis.training.train import TrainResult, train


def _train(overrides: list[str], *extra: str) -> TrainResult:
    result = train(compose_config([*overrides, *extra]))
    assert result is not None
    return result


@pytest.fixture(scope="module")
def demo_run(tiny_root: Path, tiny_overrides: list[str]) -> TrainResult:
    """The demo recipe on the tiny set, 6 epochs."""
    return _train(tiny_overrides, f"run_dir={tiny_root / 'runs' / 'demo-a'}")


@pytest.mark.slow
def test_demo_learns_and_writes_the_whole_run_directory(demo_run: TrainResult) -> None:
    run = demo_run.run_dir
    for name in (
        "config.yaml",
        "metrics.json",
        "classes.json",
        "run.json",
        "train.log",
        "confusion_matrix.png",
    ):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "checkpoints" / "last.ckpt").is_file()

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.6, metrics["accuracy"]  # chance is 1/3
    assert set(metrics["per_class"]) == set(json.loads((run / "classes.json").read_text()))
    for vals in metrics["per_class"].values():
        assert set(vals) == {"precision", "recall", "f1", "support"}

    info = json.loads((run / "run.json").read_text())
    assert info["epochs"] == 5 and info["cache_hash"] and Path(info["cache_dir"]).is_dir()
    assert info["model"] == "compact" and info["max_time"] is None and info["stopped_by_max_time"] is False
    assert {"python", "torch", "lightning", "cpu_count", "device"} <= set(info["environment"])

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["run_dir"] == str(run) and "${" not in (run / "config.yaml").read_text()  # resolved
    assert "feature cache" in (run / "train.log").read_text()

    loaded = load_network(run / "checkpoints" / "best.ckpt")
    assert loaded.classes == json.loads((run / "classes.json").read_text())
    assert loaded.window_s == 1.0 and loaded.features.n_mels == 64 and loaded.cache_hash == info["cache_hash"]


@pytest.mark.slow
def test_same_seed_same_metrics(demo_run: TrainResult, tiny_root: Path, tiny_overrides: list[str]) -> None:
    again = _train(tiny_overrides, f"run_dir={tiny_root / 'runs' / 'demo-b'}")
    assert again.metrics["accuracy"] == demo_run.metrics["accuracy"]
    assert again.metrics["macro_f1"] == demo_run.metrics["macro_f1"]
    assert again.metrics["confusion_matrix"] == demo_run.metrics["confusion_matrix"]
    assert again.best_val == demo_run.best_val


@pytest.mark.slow
def test_a_time_limit_that_fires_is_recorded(tiny_root: Path, tiny_overrides: list[str]) -> None:
    # one second of training cannot reach 200 epochs: the opt-in guard ends the run and says so
    result = _train(
        tiny_overrides,
        "trainer.max_epochs=200",
        "trainer.max_time=00:00:00:01",
        f"run_dir={tiny_root / 'runs' / 'timed'}",
    )
    info = json.loads((result.run_dir / "run.json").read_text())
    assert result.stopped_by_max_time and info["stopped_by_max_time"] is True
    assert info["max_time"] == "00:00:00:01" and info["epochs"] < info["max_epochs"] == 200
    assert "stopped training after" in (result.run_dir / "train.log").read_text()
    assert (result.run_dir / "metrics.json").is_file()  # the run is still tested and complete


def test_run_names_are_unique_within_one_second() -> None:
    names = {new_run_name("demo") for _ in range(50)}
    assert len(names) == 50


def test_an_existing_run_directory_is_never_overwritten(
    demo_run: TrainResult, tiny_overrides: list[str]
) -> None:
    with pytest.raises(ConfigError, match="already holds a run"):
        train(compose_config([*tiny_overrides, f"run_dir={demo_run.run_dir}"]))


def test_resume_without_a_last_checkpoint_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config\.yaml"):
        train(compose_config([f"resume={tmp_path}"]))
