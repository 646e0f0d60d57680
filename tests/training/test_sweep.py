"""A two-trial Optuna sweep: each trial a tracked run, the best trial's config saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from vocalis.training.config import compose_config
from vocalis.training.sweep import run_sweep


@pytest.mark.slow
def test_two_trial_sweep_saves_the_best_config(tmp_path: Path, tiny_overrides: list[str]) -> None:
    db = tmp_path / "mlflow.db"
    sweep_dir = tmp_path / "sweep"
    cfg = compose_config(
        [
            *tiny_overrides,
            "hparams_search=optuna",
            "hparams_search.n_trials=2",
            "trainer.max_epochs=2",
            "logger=mlflow",
            f"paths.mlflow_uri=sqlite:///{db}",
            f"paths.mlruns_dir={tmp_path / 'mlruns'}",
            f"run_dir={sweep_dir}",
        ]
    )
    result = run_sweep(cfg)
    assert len(result.trials) == 2
    summary = json.loads((sweep_dir / "sweep.json").read_text())
    assert summary["best_trial"] == result.best_trial
    best = yaml.safe_load(result.best_config.read_text())
    # the best config holds the sampled values of the best trial
    assert best["optimizer"]["lr"] == pytest.approx(result.best_params["optimizer.lr"])
    assert best["model"]["width"] == result.best_params["model.width"]
    for t in range(2):
        assert (sweep_dir / f"trial-{t:03d}" / "metrics.json").is_file()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name("vocalis")
    assert exp is not None
    assert len(client.search_runs([exp.experiment_id])) == 2  # one tracked run per trial
