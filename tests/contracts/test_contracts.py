"""The contract package: torch-free, one card validated by pydantic, one file walk, one checkpoint layout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vocalis.contracts.card import ModelCard
from vocalis.contracts.discovery import find_audio_files
from vocalis.contracts.features import FeatureParams
from vocalis.contracts.windows import MIN_AUDIO_SAMPLES, WindowSpec, require_featurizable
from vocalis.errors import ArtifactError, AudioTooShortError

CARD = {
    "classes": ["a", "b"],
    "sample_rate": 16_000,
    "window_s": 1.0,
    "hop_s": 0.5,
    "features": {"sample_rate": 16_000, "n_fft": 512, "hop_length": 160, "n_mels": 32, "f_max": 7500.0},
}


def test_importing_every_contract_module_loads_no_torch() -> None:
    code = (
        "import sys, pkgutil, importlib, vocalis.contracts as c\n"
        "for m in pkgutil.iter_modules(c.__path__): importlib.import_module(f'vocalis.contracts.{m.name}')\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'vocalis.export'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_card_round_trips_and_keeps_unknown_fields(tmp_path: Path) -> None:
    card = ModelCard.from_dict({**CARD, "future_field": {"x": 1}})
    assert card.feature_params == FeatureParams.from_dict(CARD["features"])
    assert card.window_samples == 16_000 and card["hop_s"] == 0.5 and card.get("nope", 7) == 7
    card.save(tmp_path)
    again = ModelCard.load(tmp_path)
    assert again.to_dict() == card.to_dict() and again.get("future_field") == {"x": 1}
    assert json.loads(card.metadata_props()["vocalis.classes"]) == ["a", "b"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"classes": []}, "'classes'"),
        ({"sample_rate": 0}, "'sample_rate'"),
        ({"window_s": float("inf")}, "'window_s'"),
        ({"features": {"sample_rate": 8000, "f_max": 7000.0}}, "Nyquist"),
        ({"features": "mel"}, "'features'"),
    ],
)
def test_a_bad_card_names_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(ArtifactError, match=message):
        ModelCard.from_dict({**CARD, **change}, where="x/model.json")


def test_short_audio_rule_refuses_only_empty_audio() -> None:
    require_featurizable(MIN_AUDIO_SAMPLES, "one-sample.wav")
    with pytest.raises(AudioTooShortError, match=r"empty\.wav: too short: 0 samples at 32000 Hz"):
        require_featurizable(0, "empty.wav", 32_000)
    spec = WindowSpec(1.0, 0.5, 100)
    assert spec.cut(np.ones(3, np.float32)).shape == (1, 100)  # padded to a whole window
    assert spec.bounds_seconds(3) == [(0.0, 0.03)]


def test_find_audio_files_filters_by_extension_and_skips_hidden(tmp_path: Path) -> None:
    for rel in ("a/x.WAV", "a/b/y.flac", "a/notes.txt", ".hidden/z.wav", "a/.w.wav"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    others: list[Path] = []
    found = find_audio_files(tmp_path, others=others)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/b/y.flac", "a/x.WAV"]
    assert [p.name for p in others] == ["notes.txt"]
    assert find_audio_files(tmp_path / "a", recursive=False) == [tmp_path / "a" / "x.WAV"]
    assert find_audio_files(tmp_path / "a" / "notes.txt") == [tmp_path / "a" / "notes.txt"]


def test_checkpoint_written_by_the_one_writer_is_read_back(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from vocalis.contracts.checkpoint import network_hparams, read_checkpoint, save_checkpoint

    params = FeatureParams(sample_rate=16_000, n_fft=512, hop_length=160, n_mels=32, f_max=7500.0)
    hp = network_hparams(model_name="compact", classes=["a", "b"], features=params, window_s=1.0, hop_s=0.5)
    assert (hp["n_mels"], hp["n_frames"]) == (32, 101)  # 1 + 16000 // 160
    state = {"w": torch.arange(3.0)}
    ckpt = read_checkpoint(save_checkpoint(tmp_path / "c" / "best.ckpt", state, hp))
    assert ckpt.features == params and torch.equal(ckpt.net_state["w"], state["w"])
    torch.save({"state_dict": {}, "hyper_parameters": {"classes": ["a"]}}, tmp_path / "bad.ckpt")
    with pytest.raises(ArtifactError, match="lacks hyper-parameters"):
        read_checkpoint(tmp_path / "bad.ckpt")
