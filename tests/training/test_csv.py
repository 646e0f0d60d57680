"""A user's CSV manifest with given splits trains with the CPU recipe (``data=csv experiment=folder_cpu``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from vocalis.training.config import compose_config
from vocalis.training.train import train


@pytest.mark.slow
def test_csv_manifest_with_given_splits_trains(tmp_path: Path, tiny_root: Path) -> None:
    files = sorted((tiny_root / "synth").glob("*/*.*"))
    files = [f for f in files if f.suffix in (".wav", ".flac")]
    manifest = tmp_path / "clips.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "split"])
        for i, f in enumerate(files):
            split = ("train", "train", "train", "val", "test")[i % 5]
            w.writerow([str(f), f.parent.name, split])
    run = tmp_path / "run"
    cfg = compose_config(
        [
            "experiment=folder_cpu",
            "data=csv",
            f"data.manifest={manifest}",
            "data.window_s=1.0",
            "data.hop_s=1.0",
            "data.prepare_workers=1",
            "model=compact_small",
            f"paths.root_dir={tmp_path}",
            "trainer.max_epochs=1",
            "callbacks=minimal",
            "logger=none",
            f"run_dir={run}",
        ]
    )
    result = train(cfg)
    assert result is not None
    cache_manifest = csv.DictReader(
        (Path(json.loads((run / "run.json").read_text())["cache_dir"]) / "manifest.csv").open()
    )
    by_path = {str(f): ("train", "train", "train", "val", "test")[i % 5] for i, f in enumerate(files)}
    for row in cache_manifest:
        assert row["split"] == by_path[row["path"]]  # the CSV's splits are kept, not re-drawn
    assert json.loads((run / "metrics.json").read_text())["n"] > 0
