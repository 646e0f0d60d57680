"""LogMel on streams: windows cut from a stream's shared STFT frames equal LogMel on each window alone.

The exported graph computes each STFT frame of a stream once and cuts the windows from the spectrogram
(:class:`vocalis.features.StreamLogMel`); the frames at a window's edges see that window's zero padding.
These tests compare it, in PyTorch and in onnxruntime, with the training featurizer (``LogMel``, stft
"fft") run on every window cut out by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from vocalis.features import FeatureParams, LogMel, StreamLogMel, stream_layout

#: dB: float32 sums in another order than torch.stft's FFT (the per-window factored form measured ~2e-5 dB
#: near 0 dB; cells 80 dB below a loud peak differ most)
TOL_DB = 1e-2

CASES = [
    (FeatureParams(), 3.0, 1.5),  # the demo: half-overlapping windows
    (FeatureParams(), 3.0, 3.0),  # windows that touch: only the edge frames are their own
    (FeatureParams(sample_rate=16_000, n_fft=512, hop_length=160, n_mels=32, f_max=7_500.0), 1.0, 0.5),
    (FeatureParams(sample_rate=22_050, n_fft=2048, hop_length=441, n_mels=64, f_max=10_000.0), 2.0, 0.4),
]


def _stream(samples: int, sr: int, seed: int) -> np.ndarray:
    """A chirp switched on and off, a click and quiet noise: loud and near-silent frames at window edges."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / sr
    x = 0.5 * np.sin(2 * np.pi * (300 * t + 400 * t**2)) * (np.sin(5 * t) > 0)
    x[samples // 3] += 1.0
    return (x + 1e-3 * rng.standard_normal(samples)).astype(np.float32)


def _reference(params: FeatureParams, rows: np.ndarray, w: int, h: int) -> torch.Tensor:
    k = (rows.shape[1] - w) // h + 1
    cut = np.stack([r[j * h : j * h + w] for r in rows for j in range(k)])
    with torch.no_grad():
        return LogMel(params)(torch.from_numpy(cut))


@pytest.mark.parametrize(("params", "window_s", "hop_s"), CASES)
def test_stream_windows_equal_logmel_on_each_window(
    params: FeatureParams, window_s: float, hop_s: float
) -> None:
    sr = params.sample_rate
    w, h = round(window_s * sr), round(hop_s * sr)
    assert stream_layout(params, w, h) is not None
    module = StreamLogMel(params, w, h)
    for k, extra in ((1, 0), (2, 0), (7, h // 3)):  # samples past the last whole window are not used
        rows = np.stack([_stream(w + (k - 1) * h + extra, sr, seed) for seed in (0, 1)])
        with torch.no_grad():
            got = module(torch.from_numpy(rows))
        ref = _reference(params, rows, w, h)
        assert got.shape == ref.shape == (2 * k, 1, params.n_mels, params.n_frames(w))
        assert float((got - ref).abs().max()) <= TOL_DB


def test_shared_frames_equal_the_window_path() -> None:
    """The stream's mel power is the per-window matmul form's: the same frames and weights, summed by the
    convolution at other positions (float32 rounding only: within 1e-6 of each window's peak; measured
    1e-7)."""
    params, w, h = FeatureParams(), 96_000, 48_000
    logmel = LogMel(params, stft="matmul")
    row = _stream(w + 4 * h, params.sample_rate, 3)[None]
    cut = np.stack([row[0, j * h : j * h + w] for j in range(5)])
    with torch.no_grad():
        stream = logmel.stream(torch.from_numpy(row), w, h)
        alone = logmel._matmul_mel(torch.from_numpy(cut))
    assert stream.shape == alone.shape == (5, params.n_mels, params.n_frames(w))
    peak = alone.amax(dim=(1, 2), keepdim=True)
    assert float(((stream - alone).abs() / peak).max()) <= 1e-6


def test_windows_that_cannot_share_frames_are_refused() -> None:
    params = FeatureParams()
    assert stream_layout(params, 96_000, 48_001) is None  # off the STFT hop grid
    assert stream_layout(params, 96_000, 96_320) is None  # gaps between windows
    assert stream_layout(params, 640, 320) is None  # a window shorter than a frame
    with pytest.raises(ValueError, match="cannot share"):
        StreamLogMel(params, 96_000, 48_001)


def test_exported_stream_graph_takes_any_number_of_windows(tmp_path: Path) -> None:
    """One ONNX graph, dynamic samples axis: one window a row (the old contract) and streams of k windows."""
    params, w, h = (
        FeatureParams(sample_rate=16_000, n_fft=512, hop_length=160, n_mels=32, f_max=7_500.0),
        16_000,
        8_000,
    )

    class Wrap(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.featurizer = StreamLogMel(params, w, h)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.featurizer(x)

    example = torch.zeros(2, w + 2 * h)
    example[:, ::97] = 0.1
    program = torch.onnx.export(
        Wrap().eval(),
        (example,),
        dynamo=True,
        input_names=["waveform"],
        output_names=["logmel"],
        dynamic_shapes=({0: torch.export.Dim("batch", max=1024), 1: torch.export.Dim("samples", min=w)},),
        opset_version=18,
        verbose=False,
    )
    assert program is not None
    program.save(str(tmp_path / "f.onnx"))
    session = ort.InferenceSession(str(tmp_path / "f.onnx"), providers=["CPUExecutionProvider"])
    for rows_n, k in ((3, 1), (1, 9), (2, 4)):
        rows = np.stack([_stream(w + (k - 1) * h, params.sample_rate, s) for s in range(rows_n)])
        got = session.run(None, {"waveform": rows})[0]
        ref = _reference(params, rows, w, h).numpy()
        assert got.shape == ref.shape
        assert float(np.abs(got - ref).max()) <= TOL_DB
