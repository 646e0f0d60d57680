"""The gate's parts that need no registry: the frozen evaluation set's content hash, the config."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vocalis.errors import ConfigError, DatasetError
from vocalis.registry.gate import GateConfig, load_eval_set


def _manifest(root: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = ["path,label,split"]
    for i, label in enumerate(["a", "b", "a"]):
        sf.write(root / f"c{i}.wav", (rng.standard_normal(8000) * 0.1).astype(np.float32), 16000)
        rows.append(f"c{i}.wav,{label},test")
    (root / "eval.csv").write_text("\n".join(rows) + "\n")
    return root / "eval.csv"


def test_the_hash_follows_content_not_place(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    first = load_eval_set(_manifest(tmp_path / "x"))
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "x", moved)
    same = load_eval_set(moved / "eval.csv")
    assert same.hash == first.hash and same.source != first.source
    assert first.classes == ["a", "b"] and first.split == "test"
    # one changed sample is another set
    wave, sr = sf.read(moved / "c1.wav", dtype="float32")
    wave[100] += 0.01
    sf.write(moved / "c1.wav", wave, sr)
    assert load_eval_set(moved / "eval.csv").hash != first.hash
    # so is a relabelled row
    (moved / "eval.csv").write_text((moved / "eval.csv").read_text().replace("c2.wav,a", "c2.wav,b"))
    assert load_eval_set(moved / "eval.csv").hash != first.hash


def test_windows_are_cut_at_each_models_rate(tmp_path: Path) -> None:
    es = load_eval_set(_manifest(tmp_path))
    waves, labels, bad = es.windows(8000, 0.25)
    assert waves.shape == (3 * 2, 2000) and labels == ["a", "a", "b", "b", "a", "a"] and bad == []


def test_bad_eval_sets_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_eval_set(tmp_path / "nothing.csv")
    (tmp_path / "bad.csv").write_text("file,species\nx.wav,a\n")
    with pytest.raises(DatasetError, match=r"lacks the columns \['label', 'path'\]"):
        load_eval_set(tmp_path / "bad.csv")
    (tmp_path / "gone.csv").write_text("path,label\nmissing.wav,a\n")
    with pytest.raises(DatasetError, match="missing"):
        load_eval_set(tmp_path / "gone.csv")


def test_gate_config_from_file_and_options(tmp_path: Path) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text("gate:\n  tolerance: 0.01\n  min_accuracy: 0.8\n")
    cfg = GateConfig.load(path, min_accuracy=0.9, max_slowdown=None)
    assert (cfg.tolerance, cfg.min_accuracy, cfg.max_slowdown) == (0.01, 0.9, 0.25)
    path.write_text("tolerance: 2\n")
    with pytest.raises(ConfigError, match="tolerance"):
        GateConfig.load(path)
    path.write_text("tolerence: 0.1\n")
    with pytest.raises(ConfigError, match="tolerence"):
        GateConfig.load(path)
