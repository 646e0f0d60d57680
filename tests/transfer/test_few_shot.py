"""Few-shot for the from-scratch recipes: ``data.max_per_class`` in a real training run on the tiny prepared
set (the data stage's cache, the real trainer): the run trains on the recordings the shared draw keeps,
records the setting in its config, and is tested on the whole test split."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml


def test_from_scratch_run_trains_on_the_few_shot_draw(tiny_root: Path, tiny_overrides: list[str]) -> None:
    pytest.importorskip("lightning")
    from vocalis.data.splits import few_shot_indices
    from vocalis.training.config import compose_config
    from vocalis.training.train import prepare_data, train

    cfg = compose_config(
        [
            *tiny_overrides,
            "data.max_per_class=2",
            "seed=5",
            "trainer.max_epochs=2",
            f"run_dir={tiny_root / 'runs' / 'few-shot'}",
        ]
    )
    cache = prepare_data(cfg)
    result = train(cfg, cache=cache)
    assert result is not None
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert saved["data"]["max_per_class"] == 2 and saved["seed"] == 5
    rows = few_shot_indices(cache.manifest, 2, seed=5)
    full_train = int((cache.manifest["split"] == "train").sum())
    assert 0 < len(rows["train"]) < full_train
    # every optimizer step is one batch of the kept training windows (drop_last=False), two epochs
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["global_step"] == 2 * math.ceil(len(rows["train"]) / int(cfg.loader.batch_size))
    assert "few-shot: at most 2 recordings per class, seed 5" in (result.run_dir / "train.log").read_text()
    # the test split is never reduced
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert sum(sum(r) for r in metrics["confusion_matrix"]) == len(rows["test"])
    assert len(rows["test"]) == int((cache.manifest["split"] == "test").sum())
