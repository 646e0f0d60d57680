"""`vocalis data synth` and `vocalis data prepare` through the real Typer app and Hydra config."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from vocalis.cli import app
from vocalis.configs import compose_config
from vocalis.errors import ConfigError

runner = CliRunner()


@pytest.mark.slow
def test_synth_then_prepare_then_current(tmp_path: Path) -> None:
    out = tmp_path / "syn"
    r = runner.invoke(app, ["data", "synth", str(out), "--classes", "3", "--per-class", "4", "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert len(list(out.rglob("*.wav")) + list(out.rglob("*.flac"))) == 12
    args = [
        "data",
        "prepare",
        f"data.root={out}",
        "data.synth.classes=3",
        "data.synth.per_class=4",
        "data.synth.seed=1",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "data.prepare_workers=1",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "upsweep_whistle" in r.output and "built" in r.output and "skipped 0 files" in r.output
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "cache is current" in r.output and "reused" in r.output


def test_prepare_folder_without_root_is_a_config_error(tmp_path: Path) -> None:
    r = runner.invoke(app, ["data", "prepare", "data=folder", f"paths.cache_dir={tmp_path}"])
    assert isinstance(r.exception, ConfigError) and "root" in str(r.exception)


def test_bad_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        compose_config(["data=nonexistent"])


@pytest.mark.parametrize("group", ["synthetic", "folder", "csv", "wmms"])
def test_every_data_config_composes_with_the_documented_keys(group: str) -> None:
    cfg = compose_config([f"data={group}"])
    for key in (
        "source",
        "window_s",
        "hop_s",
        "features",
        "split",
        "batch_size",
        "chunk_size",
    ):
        assert key in cfg.data, key
    assert set(cfg.data.features) >= {
        "sample_rate",
        "n_fft",
        "hop_length",
        "n_mels",
        "f_min",
        "f_max",
        "top_db",
    }
    assert "cache_dir" in cfg.paths and "seed" in cfg


@pytest.mark.parametrize("group", ["synthetic", "folder", "csv", "wmms"])
def test_every_data_config_windows_fit_its_featurizer(group: str) -> None:
    """Whatever values a data config picks, its windows must tile the audio (0 < hop <= window) and be a
    whole number of samples at the featurizer's rate; a command-line override replaces the YAML value."""
    data = compose_config([f"data={group}"]).data
    sr = int(data.features.sample_rate)
    assert 0 < data.hop_s <= data.window_s
    assert data.window_s * sr == pytest.approx(round(data.window_s * sr), abs=1e-6)
    assert data.features.hop_length < data.features.n_fft <= round(data.window_s * sr)
    assert 0 <= data.features.f_min < data.features.f_max <= sr / 2
    over = compose_config([f"data={group}", "data.window_s=2.0", "data.hop_s=0.5"]).data
    assert (over.window_s, over.hop_s) == (2.0, 0.5)
