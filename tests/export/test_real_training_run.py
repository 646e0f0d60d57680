"""Through the real stages: the session's run (data stage + real trainer, see ``support.runs``) is
exported and one of its own recordings predicted from the artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("lightning")


def test_export_and_predict_a_run_of_the_real_trainer(trained_run: Path, fp32_artifact: Path) -> None:
    from vocalis.contracts.card import ModelCard
    from vocalis.inference import Predictor

    card = ModelCard.load(fp32_artifact)
    run_json = json.loads((trained_run / "run.json").read_text())
    assert card.classes == json.loads((trained_run / "classes.json").read_text())
    assert "cache_hash" in run_json and card.cache_hash == run_json["cache_hash"]
    assert card.parity["max_abs_diff"] <= 1e-4
    assert card.parity["windows"].endswith(":test+val+train")  # the run's cached audio, not synthetic
    calls = trained_run.parents[1] / "calls"
    recording = sorted((calls / "gamma").glob("*.wav"))[0]
    fp = Predictor.from_dir(fp32_artifact).predict(recording)
    assert fp.windows and fp.summary.top_label in card.classes
