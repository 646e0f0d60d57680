"""Shared-frame featurization of a clip's windows computes what LogMel (and so the ONNX model) does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vocalis.contracts.windows import WindowSpec
from vocalis.data.featurize import clip_windows, shares_frames
from vocalis.data.prepare import window_starts
from vocalis.features import FeatureParams, LogMel

# The edge frames go through torch.fft.rfft, the others through torch.stft: they round differently in
# float32. The cache stores float16 (0.03 dB steps at -80 dB), so 1e-3 dB is far below storage.
TOL_DB = 1e-3

CASES = [
    (FeatureParams(), 3.0, 1.5),
    (FeatureParams(), 11.67, 11.67),
    (FeatureParams(), 5.0, 2.5),
    (FeatureParams(sample_rate=16_000, n_fft=512, hop_length=160, n_mels=32, f_max=7_000.0), 1.0, 0.5),
]


def clip(seconds: float, sr: int, seed: int, quiet: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.5 * np.sin(2 * np.pi * (200 * t + 200 * t**2)) * (np.sin(3 * t) > 0) + 0.01 * rng.standard_normal(
        len(t)
    )
    return (x * (1e-4 if quiet else 1.0)).astype(np.float32)


@pytest.mark.parametrize(("params", "window_s", "hop_s"), CASES)
def test_clip_windows_equal_logmel_on_each_window(
    params: FeatureParams, window_s: float, hop_s: float
) -> None:
    spec = WindowSpec(window_s, hop_s, params.sample_rate)
    assert shares_frames(params, spec.window_samples, spec.hop_samples)
    net = LogMel(params)
    for i, seconds in enumerate([0.2, 1.0, 2.9, 3.3, 4.6, 7.77, 20.0]):
        x = clip(seconds, params.sample_rate, i, quiet=i == 1)
        n = len(x)
        starts = window_starts(spec, n)
        w = spec.window_samples
        xp = np.pad(x, (0, max(0, int(starts[-1]) + w - n)))
        windows = torch.from_numpy(np.stack([xp[s : s + w] for s in starts]))
        with torch.no_grad():
            ref = net(windows)[:, 0]
            shared = clip_windows(net, xp, starts, w, n)
        assert shared.shape == ref.shape == (len(starts), params.n_mels, params.n_frames(w))
        assert float((shared - ref).abs().max()) < TOL_DB
        # the clip unpadded (what preparation passes): samples past its end count as zeros
        assert torch.equal(clip_windows(net, x, starts, w, n), shared)
        if len(starts) > 2:  # a later run of windows (the pipeline cuts long clips into batches)
            with torch.no_grad():
                part = clip_windows(net, xp, starts[2:], w, n)
            assert float((part - ref[2:]).abs().max()) < TOL_DB


def test_hops_off_the_frame_grid_do_not_share_frames() -> None:
    p = FeatureParams()
    assert not shares_frames(p, 96_000, 48_010)
    assert shares_frames(p, 96_000, 48_000)
