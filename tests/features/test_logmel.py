"""vocalis.features.LogMel: parity with librosa (the seed's featurizer) and with its own ONNX export."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

from vocalis.features import FeatureParams, LogMel
from vocalis.mel import mel_filterbank

# librosa computes in float64 (it upcasts the STFT), LogMel in float32: after the log the difference is a
# few 1e-5 dB; 1e-3 dB leaves room for other BLAS builds and is still far below anything a model sees.
LIBROSA_TOL_DB = 1e-3
ONNX_TOL_DB = 1e-3


def signal(n: int, sr: int, seed: int = 0) -> np.ndarray:
    """A chirp plus noise: energy in every mel band, a wide dynamic range."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    chirp = np.sin(2 * np.pi * (200 * t + 2000 * t**2))
    return (0.5 * chirp + 0.05 * rng.standard_normal(n)).astype(np.float32)


def librosa_logmel(y: np.ndarray, p: FeatureParams) -> np.ndarray:
    s = librosa.feature.melspectrogram(
        y=y,
        sr=p.sample_rate,
        n_fft=p.n_fft,
        hop_length=p.hop_length,
        n_mels=p.n_mels,
        fmin=p.f_min,
        fmax=p.f_max,
        center=True,
        pad_mode="constant",
        power=2.0,
    )
    return librosa.power_to_db(s, ref=np.max, top_db=p.top_db)


@pytest.mark.slow  # librosa's first call compiles numba kernels (~8 s)
@pytest.mark.parametrize(
    "params",
    [FeatureParams(), FeatureParams(sample_rate=16_000, n_fft=512, hop_length=160, n_mels=40, f_max=8000.0)],
    ids=["default", "16k"],
)
def test_logmel_matches_librosa(params: FeatureParams) -> None:
    n = 3 * params.sample_rate
    x = np.stack([signal(n, params.sample_rate, s) for s in range(3)])
    with torch.no_grad():
        ours = LogMel(params)(torch.from_numpy(x)).numpy()
    assert ours.shape == (3, 1, params.n_mels, params.n_frames(n))
    for i in range(3):
        ref = librosa_logmel(x[i], params)
        assert ref.shape == ours[i, 0].shape
        assert np.max(np.abs(ours[i, 0] - ref)) < LIBROSA_TOL_DB


def test_logmel_range_and_gain_invariance() -> None:
    p = FeatureParams()
    x = torch.from_numpy(signal(32_000, p.sample_rate))[None]
    with torch.no_grad():
        a = LogMel(p)(x)
        b = LogMel(p)(x * 0.01)
    assert float(a.max()) == 0.0 and float(a.min()) >= -p.top_db
    assert torch.allclose(a, b, atol=1e-3)  # per-window max reference: gain does not matter


def test_mel_filterbank_matches_librosa() -> None:
    ours = mel_filterbank(32_000, 1024, 64, 50.0, 14_000.0)
    ref = librosa.filters.mel(sr=32_000, n_fft=1024, n_mels=64, fmin=50.0, fmax=14_000.0)
    np.testing.assert_allclose(ours, ref, atol=1e-6)


@pytest.mark.slow
def test_onnx_export_matches_torch(tmp_path: Path) -> None:
    import onnxruntime as ort

    p = FeatureParams()
    model = LogMel(p).eval()
    example = torch.from_numpy(np.stack([signal(96_000, p.sample_rate, s) for s in range(2)]))
    path = tmp_path / "logmel.onnx"
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=True,
        dynamic_shapes={"waveform": {0: batch}},
        input_names=["waveform"],
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.stack([signal(96_000, p.sample_rate, s) for s in range(3, 8)])  # another batch size
    (out,) = sess.run(None, {sess.get_inputs()[0].name: x})
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert out.shape == ref.shape == (5, 1, 64, 301)
    assert np.max(np.abs(out - ref)) < ONNX_TOL_DB
