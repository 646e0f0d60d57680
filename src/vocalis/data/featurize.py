"""The log-mels of one clip's overlapping windows, in numpy, each STFT frame computed once.

Data preparation featurizes thousands of short clips, a few windows each. :class:`ClipFeaturizer` computes
there what :class:`vocalis.features.LogMel` computes on each window (the same periodic Hann window, centred
frames with zero padding, used bins, mel basis from :mod:`vocalis.mel` and dB conversion), with numpy's
FFT (scipy's where installed) and no torch: a preparation worker then needs numpy, soundfile and soxr
only (importing torch costs about a second of CPU and 0.5 GB per process), and per-clip calls pay no
torch operator overhead.

Windows that overlap (3 s windows every 1.5 s) share most of their STFT frames: the clip's power spectrum
is computed once and only the frames at each window's edges, where the window's own zero padding shows,
are computed per window; frames that hold only the zero padding after the clip's last sample are not
transformed at all (their mel power is exactly zero). The result equals ``LogMel()(stacked windows)`` to
float32 rounding: the tests bound the difference at 1e-3 dB, far below the cache's float16 steps.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from vocalis.contracts.features import FeatureParams
from vocalis.mel import mel_filterbank


def _rfft_of_choice() -> Any:
    """scipy's ``rfft`` where installed, else numpy's; imported when the first featurizer is built, so that
    a run that finds its cache current never imports ``scipy.fft`` (0.3-0.4 s)."""
    try:  # scipy's pocketfft runs float32 frames 5-8x faster than numpy's FFT here (measured, one thread)
        from scipy import fft
    except ImportError:  # pragma: no cover - scipy comes with the train extra (scikit-learn, librosa)
        from numpy import fft  # type: ignore[no-redef]
    return fft.rfft


if TYPE_CHECKING:  # the torch wrapper below is for callers that hold a LogMel
    import torch

    from vocalis.features import LogMel


_DB_PER_NEPER = np.float32(10.0 / math.log(10.0))


def shares_frames(params: FeatureParams, window_samples: int, hop_samples: int) -> bool:
    """Whether window starts at multiples of ``hop_samples`` fall on the featurizer's frame grid (the hop is
    a whole number of featurizer hops), so that :func:`clip_windows` can compute each frame once."""
    return hop_samples % params.hop_length == 0 and window_samples > params.n_fft


class ClipFeaturizer:
    """:class:`vocalis.features.LogMel` in numpy, for the windows of one clip at a time.

    Args:
        params: the featurizer parameters (those the cache records).
    """

    def __init__(self, params: FeatureParams) -> None:
        self.params = p = params
        mel = mel_filterbank(p.sample_rate, p.n_fft, p.n_mels, p.f_min, p.f_max)
        used = np.flatnonzero(mel.sum(axis=0) > 0)  # the bins some band uses, as LogMel keeps
        self.lo = int(used[0])
        self.n_bins = int(used[-1]) + 1 - self.lo
        # [bins, mels]: frames x bins @ bins x mels is one GEMM with the frames as rows
        self.mel_t = np.ascontiguousarray(mel[:, self.lo : self.lo + self.n_bins].T, dtype=np.float32)
        # periodic Hann, computed in float64 then rounded, as LogMel's buffer
        n = np.arange(p.n_fft)
        self.window = (0.5 - 0.5 * np.cos(2 * math.pi * n / p.n_fft)).astype(np.float32)
        self._rfft = _rfft_of_choice()
        self._edge_cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _mel_power(self, frames: np.ndarray) -> np.ndarray:
        """Mel power ``[frames, n_mels]`` of ``[frames, n_fft]`` raw frames (windowed here)."""
        spec = self._rfft(frames * self.window, axis=-1, overwrite_x=True)
        # squares in place on the interleaved (re, im) floats, then re^2 + im^2 of the used bins
        v = spec.view(np.float32)
        np.multiply(v, v, out=v)
        a, b = 2 * self.lo, 2 * (self.lo + self.n_bins)
        power = v[:, a:b:2] + v[:, a + 1 : b : 2]
        return np.asarray(power @ self.mel_t, dtype=np.float32)

    def _db(self, mel: np.ndarray) -> np.ndarray:
        # 10 log10(x) as (10 / ln 10) ln(x): numpy's float32 log is vectorised, its log10 is not (3x the
        # time); the two agree to 4e-6 dB
        return _DB_PER_NEPER * np.log(np.maximum(mel, np.float32(self.params.amin)))

    def _edges(self, window_samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For windows of ``window_samples``: the frames whose span ``[hop*j - half, hop*j + half)`` leaves
        the window (they see its zero padding), ``[e, n_fft]`` 0/1 masks of their samples inside it, and
        each frame's number among them (-1 for the others). Computed once per window length."""
        hit = self._edge_cache.get(window_samples)
        if hit is None:
            p = self.params
            hop, half, w = p.hop_length, p.n_fft // 2, window_samples
            n_frames = p.n_frames(w)
            edge = np.array(
                [j for j in range(n_frames) if hop * j - half < 0 or hop * j + half > w], np.int64
            )
            local = (edge * hop - half)[:, None] + np.arange(p.n_fft)  # [e, n_fft] window-relative
            inside = ((local >= 0) & (local < w)).astype(np.float32)
            edge_no = np.full(n_frames, -1, np.int64)
            edge_no[edge] = np.arange(len(edge))
            hit = self._edge_cache[window_samples] = (edge, inside, edge_no)
        return hit

    def windows(
        self, x: np.ndarray, starts: np.ndarray, window_samples: int, num_samples: int | None = None
    ) -> np.ndarray:
        """Log-mels ``[n, n_mels, frames]`` float32 of the windows ``x[s : s + window_samples]``, ``s`` in
        ``starts``: each window's as ``LogMel`` computes it on that window alone (zero-padded at the end).

        ``starts`` must be evenly spaced multiples of the featurizer hop (see :func:`shares_frames`) when
        there are several. Samples past the end of ``x`` count as zeros (no padded copy is needed), and so
        must ``x[num_samples:]`` be.
        """
        p = self.params
        hop, n_fft, half = p.hop_length, p.n_fft, p.n_fft // 2
        w = window_samples
        n_frames = p.n_frames(w)
        n = len(starts)
        s0, end = int(starts[0]), int(starts[-1]) + w
        real_end = end if num_samples is None else min(end, num_samples)
        seg_len = min(end, real_end + half) - s0
        # the clip's own centred STFT over [s0, s0 + seg_len): frames past it hold only zeros
        padded = np.zeros(seg_len + 2 * half, np.float32)
        seg = x[s0 : s0 + seg_len]
        padded[half : half + len(seg)] = seg
        n_stft = 1 + seg_len // hop
        frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n_stft]
        total = (end - s0) // hop + 1
        m = min(n_stft, total)
        mel = np.zeros((total, p.n_mels), np.float32)
        mel[:m] = self._mel_power(frames[:m])
        edge, inside, edge_no = self._edges(w)
        step = (int(starts[1]) - s0) // hop if n > 1 else 1
        if len(edge):
            # window k's edge frame j is the clip's frame k*step + j with the samples outside the window
            # zeroed (frames past n_stft hold only zeros)
            ci = np.arange(n)[:, None] * step + edge[None, :]  # [n, e]
            rows = frames[np.minimum(ci, n_stft - 1)] * (inside * (ci < n_stft)[:, :, None])
            edge_mel = self._mel_power(rows.reshape(-1, n_fft))  # [n * e, mels]
            mel = np.concatenate([mel, edge_mel])
        db = self._db(mel)  # each shared frame's log once
        # frame j of window k: the clip's frame k*step + j, or its own edge frame
        col = np.arange(n)[:, None] * step + np.arange(n_frames)[None, :]  # [n, F]
        if len(edge):
            own = total + np.arange(n)[:, None] * len(edge) + edge_no[None, :]
            col = np.where(edge_no[None, :] >= 0, own, col)
        out = db[col].transpose(0, 2, 1)  # [n, mels, F]
        peak = out.max(axis=(1, 2), keepdims=True)  # ref = each window's maximum: 0 dB
        return np.maximum(out - peak, np.float32(-p.top_db))


def clip_windows(
    net: LogMel, x: np.ndarray, starts: np.ndarray, window_samples: int, num_samples: int | None = None
) -> torch.Tensor:
    """:meth:`ClipFeaturizer.windows` for ``net``'s parameters, as a tensor (equal to
    ``net(stack of zero-padded windows)[:, 0]`` to float rounding)."""
    import torch

    feats = ClipFeaturizer(net.params).windows(x, starts, window_samples, num_samples)
    return torch.from_numpy(np.ascontiguousarray(feats))
