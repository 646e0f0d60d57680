"""The featurizer as data preparation runs it: :class:`vocalis.features.LogMel` through an FFT.

``LogMel.forward`` computes the STFT as a convolution with a DFT basis, because that exports to ONNX as a
plain ``Conv``. On a CPU that costs ``n_fft x bins`` multiply-adds per frame (about 0.9 M at the defaults),
where an FFT needs a few tens of thousands: for bulk preparation of a dataset the FFT is several times
faster. :class:`FFTLogMel` *is* a ``LogMel`` (same parameters, same mel basis, same dB reference and
floor); only the STFT is computed by ``torch.stft``. The two agree to float32 rounding (the tests bound the
difference at 1e-3 dB), so the cache holds what the exported model computes.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vocalis.features import FeatureParams, LogMel
from vocalis.mel import mel_filterbank


class FFTLogMel(LogMel):
    """``LogMel`` with the STFT computed by ``torch.stft`` (for preparation; not for ONNX export)."""

    window: torch.Tensor

    def __init__(self, params: FeatureParams | None = None) -> None:
        super().__init__(params)
        p = self.params
        mel = mel_filterbank(p.sample_rate, p.n_fft, p.n_mels, p.f_min, p.f_max)
        used = np.flatnonzero(mel.sum(axis=0) > 0)
        self.lo = int(used[0])
        # periodic Hann, as in LogMel's basis
        hann = 0.5 - 0.5 * np.cos(2 * math.pi * np.arange(p.n_fft) / p.n_fft)
        self.register_buffer("window", torch.tensor(hann, dtype=torch.float32), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[B, 1, n_mels, frames]`` of ``[B, samples]``, as ``LogMel.forward`` computes it."""
        p = self.params
        spec = torch.stft(
            waveform,
            n_fft=p.n_fft,
            hop_length=p.hop_length,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )  # [B, n_fft // 2 + 1, frames]
        spec = spec[:, self.lo : self.lo + self.n_bins]
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(self.mel_basis, power)
        db = 10.0 * torch.log10(torch.clamp(mel, min=p.amin))
        peak = torch.amax(db, dim=(1, 2), keepdim=True)
        db = torch.clamp(db - peak, min=-p.top_db)
        return db.unsqueeze(1)


def shares_frames(params: FeatureParams, window_samples: int, hop_samples: int) -> bool:
    """Whether window starts at multiples of ``hop_samples`` fall on the featurizer's frame grid (the hop is
    a whole number of featurizer hops), so that :func:`clip_windows` can compute each frame once."""
    return hop_samples % params.hop_length == 0 and window_samples > params.n_fft


def clip_windows(
    net: FFTLogMel, x: np.ndarray, starts: np.ndarray, window_samples: int, num_samples: int | None = None
) -> torch.Tensor:
    """Log-mels ``[n, n_mels, frames]`` of the windows ``x[s : s + window_samples]`` for ``s`` in ``starts``.

    Equal to ``net(stack of zero-padded windows)[:, 0]`` (to float rounding), with less work:

    - overlapping windows share frames: a frame whose FFT span lies inside its window sees the same samples
      as the clip's own STFT frame there, so the clip's STFT is computed once and only the few frames at
      each window's edges (where the window's own zero padding shows) are computed per window;
    - frames that hold only the zero padding after the clip's last sample (a 1 s clip in a 3 s window is
      two thirds padding) are not transformed at all: their mel power is exactly zero.

    ``starts`` must be evenly spaced multiples of the featurizer hop (see :func:`shares_frames`), ``x``
    must extend to ``starts[-1] + window_samples``, and ``x[num_samples:]`` must be zeros.
    """
    p = net.params
    hop, n_fft, half = p.hop_length, p.n_fft, p.n_fft // 2
    w = window_samples
    n_frames = p.n_frames(w)
    s0, end = int(starts[0]), int(starts[-1]) + w
    real_end = end if num_samples is None else min(end, num_samples)
    seg_len = min(end, real_end + half) - s0
    seg = torch.from_numpy(np.ascontiguousarray(x[s0 : s0 + seg_len], dtype=np.float32))
    spec = torch.stft(
        seg[None], n_fft, hop, window=net.window, center=True, pad_mode="constant", return_complex=True
    )[0, net.lo : net.lo + net.n_bins]
    total = (end - s0) // hop + 1
    floor_db = 10.0 * math.log10(p.amin)
    clip_db = torch.full((p.n_mels, total), floor_db)
    m = min(spec.shape[1], total)
    power = spec.real[:, :m].square() + spec.imag[:, :m].square()
    clip_db[:, :m] = 10.0 * torch.log10(torch.clamp(torch.matmul(net.mel_basis, power), min=p.amin))
    step = (int(starts[1]) - s0) // hop if len(starts) > 1 else 1
    db = clip_db.unfold(1, n_frames, step)[:, : len(starts)].permute(1, 0, 2).contiguous()  # [n, mels, F]
    # frames whose span [hop*j - half, hop*j + half) leaves the window see its zero padding
    edge = [j for j in range(n_frames) if hop * j - half < 0 or hop * j + half > w]
    padded = torch.zeros(len(starts), w + 2 * half)
    for k, s in enumerate(starts.tolist()):
        n_real = max(0, min(w, seg_len - (s - s0)))
        padded[k, half : half + n_real] = seg[s - s0 : s - s0 + n_real]
    frames = torch.stack([padded[:, hop * j : hop * j + n_fft] for j in edge], dim=1) * net.window
    espec = torch.fft.rfft(frames, dim=-1)[..., net.lo : net.lo + net.n_bins]  # [n, n_edge, bins]
    emel = torch.matmul(espec.real.square() + espec.imag.square(), net.mel_basis.T)  # [n, n_edge, mels]
    db[:, :, edge] = 10.0 * torch.log10(torch.clamp(emel, min=p.amin)).transpose(1, 2)
    peak = torch.amax(db, dim=(1, 2), keepdim=True)
    return db.sub_(peak).clamp_(min=-p.top_db)
