"""Tracking: the embedded MLflow store and W&B offline runs are written where the config says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vocalis.training.config import compose_config
from vocalis.training.train import train


@pytest.mark.slow
def test_mlflow_run_has_params_metrics_and_artifacts(tmp_path: Path, tiny_overrides: list[str]) -> None:
    from mlflow.tracking import MlflowClient

    db = tmp_path / "mlflow.db"
    run_dir = tmp_path / "run"
    result = train(
        compose_config(
            [
                *tiny_overrides,
                "logger=mlflow",
                f"paths.mlflow_uri=sqlite:///{db}",
                f"paths.mlruns_dir={tmp_path / 'mlruns'}",
                "trainer.max_epochs=2",
                f"run_dir={run_dir}",
            ]
        )
    )
    assert result is not None and db.is_file()
    run_id = json.loads((run_dir / "run.json").read_text())["mlflow_run_id"]
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    run = client.get_run(run_id)
    assert run.data.params["model/_target_"] == "vocalis.models.CompactCNN"
    assert run.data.metrics["test/acc"] == pytest.approx(result.metrics["accuracy"])
    assert {"val/acc", "val/macro_f1", "val/acc_best", "train/loss_epoch"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    assert "evaluation/confusion_matrix.png" in artifacts
    assert [a.path for a in client.list_artifacts(run_id, "checkpoints")] == ["checkpoints/best.ckpt"]
    assert (tmp_path / "mlruns").is_dir()  # artifacts under paths.mlruns_dir, not the working directory


@pytest.mark.slow
def test_wandb_offline_and_csv_loggers_write_their_runs(
    tmp_path: Path, tiny_overrides: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    overrides = [
        *tiny_overrides,
        "logger=[wandb,csv]",
        "trainer.max_epochs=1",
        f"run_dir={run_dir}",
    ]
    result = train(compose_config(overrides))
    assert result is not None
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    assert list(offline[0].glob("run-*.wandb")), "no W&B run file"
    csv = (run_dir / "csv" / "metrics.csv").read_text()
    assert "val/acc" in csv and "test/acc" in csv
