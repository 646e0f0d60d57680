"""Through the real stages: the data stage prepares a tiny synthetic set, the training stage trains the demo
network on it for two epochs, then this stage exports the run and predicts one of its recordings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("lightning")


@pytest.mark.slow
def test_export_and_predict_a_run_of_the_real_trainer(tmp_path: Path) -> None:
    from vocalis.export.onnx import export_artifact
    from vocalis.inference import Predictor
    from vocalis.training.config import compose_config
    from vocalis.training.train import train

    overrides = [
        "experiment=demo",
        f"paths.root_dir={tmp_path}",
        f"data.root={tmp_path / 'synth'}",
        "data.synth.classes=3",
        "data.synth.per_class=8",
        "data.window_s=1.0",
        "data.hop_s=1.0",
        "data.prepare_workers=1",
        "data.batch_size=16",
        "trainer.max_epochs=2",
        "callbacks=minimal",
        "logger=none",
        f"run_dir={tmp_path / 'run'}",
    ]
    result = train(compose_config(overrides))
    assert result is not None
    run = tmp_path / "run"
    exported = export_artifact(run, tmp_path / "artifact")
    card = exported.card
    run_json = json.loads((run / "run.json").read_text())
    assert card.classes == json.loads((run / "classes.json").read_text())
    assert card.cache_hash and card.cache_hash == run_json.get("cache_hash", card.cache_hash)
    assert card.parity["max_abs_diff"] <= 1e-4
    assert card.parity["windows"].endswith(":test+val+train")  # the run's cached audio, not synthetic
    recording = next(p for p in sorted((tmp_path / "synth").rglob("*")) if p.suffix in (".wav", ".flac"))
    fp = Predictor.from_dir(exported.directory).predict(recording)
    assert fp.windows and fp.summary.top_label in card.classes
