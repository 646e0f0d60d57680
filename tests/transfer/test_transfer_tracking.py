"""A transfer head's run is tracked through the ``logger`` group without Lightning: a real MLflow store
(SQLite) and Lightning's CSV layout get the run's parameters, test metrics and files, and the whole
transfer run (embedding cache current) imports neither Lightning nor torch."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mlflow")


def _overrides(transfer_run: dict[str, Path], tmp_path: Path, *extra: str) -> list[str]:
    root = transfer_run["data"].parent  # the shared run's folder: its embedding cache is current
    return [
        "experiment=transfer_birdnet",
        f"data.root={transfer_run['data']}",
        f"paths.cache_dir={root / 'cache'}",
        f"paths.mlflow_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"paths.mlruns_dir={tmp_path / 'mlruns'}",
        f"run_dir={tmp_path / 'run'}",
        "data.prepare_workers=1",
        "data.split.val=0.2",
        "data.split.test=0.2",
        "head.C=[1.0]",
        *extra,
    ]


def test_transfer_run_is_logged_to_mlflow_and_csv(transfer_run: dict[str, Path], tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from vocalis.configs import compose_config
    from vocalis.transfer.train import train_transfer

    cfg = compose_config(_overrides(transfer_run, tmp_path, "logger=[mlflow,csv]"))
    result = train_transfer(cfg)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("vocalis")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    # run.json names it: the registry logs the model into the training run
    assert json.loads((result.run_dir / "run.json").read_text())["mlflow_run_id"] == run.info.run_id
    assert run.data.metrics["test/acc"] == pytest.approx(result.metrics["accuracy"])
    assert run.data.metrics["test/macro_f1"] == pytest.approx(result.metrics["macro_f1"])
    assert run.data.params["head/kind"] == "logistic" and run.data.params["backbone/name"] == "birdnet"
    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "per_class.csv", "confusion_matrix.png", "head.npz"} <= files
    # Lightning's CSV layout, in the run directory
    rows = list(csv.DictReader((result.run_dir / "csv" / "metrics.csv").open()))
    assert len(rows) == 1 and float(rows[0]["test/acc"]) == pytest.approx(result.metrics["accuracy"])
    assert "head/kind: logistic" in (result.run_dir / "csv" / "hparams.yaml").read_text()


def test_a_bad_tracking_uri_names_the_logger(transfer_run: dict[str, Path], tmp_path: Path) -> None:
    from vocalis.configs import compose_config
    from vocalis.errors import ConfigError
    from vocalis.transfer.train import train_transfer

    args = _overrides(transfer_run, tmp_path, "logger=mlflow", "logger.mlflow.tracking_uri=nosuch://x")
    with pytest.raises(ConfigError, match=r"logger\.mlflow: cannot build"):
        train_transfer(compose_config(args))


def test_a_transfer_run_imports_neither_lightning_nor_torch(
    transfer_run: dict[str, Path], tmp_path: Path
) -> None:
    """The whole run (config, embedding cache, head, report, MLflow) in a fresh interpreter."""
    code = (
        "import json, sys\n"
        "from vocalis.configs import compose_config\n"
        "from vocalis.transfer.train import train_transfer\n"
        f"train_transfer(compose_config({_overrides(transfer_run, tmp_path, 'logger=mlflow')!r}))\n"
        "print(json.dumps({m: m in sys.modules for m in ('lightning', 'torch')}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"lightning": False, "torch": False}
    assert (tmp_path / "run" / "metrics.json").is_file()
