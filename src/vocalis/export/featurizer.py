"""The featurizer as it goes into the ONNX graph: LogMel's function with a factored DFT.

:class:`vocalis.features.LogMel` (the one definition, used by training) computes the short-time Fourier
transform with ``torch.stft``, which exports to the ONNX ``STFT`` operator (an earlier LogMel used a strided
convolution with an ``n_bins x n_fft`` DFT basis). Measured here, onnxruntime's STFT kernel is about as slow
as that convolution, and the featurizer was 80-90 % of the demo model's inference time.
:class:`FactoredLogMel` computes the same numbers with one Cooley-Tukey step written as matrix products
(``n_fft = n1 * n2``: ``n2`` DFTs of length ``n1``, twiddle factors, ``n1`` DFTs of length ``n2``, only the
output rows that hold used bins), which onnxruntime runs 1.6-2x faster than either.

Frames are gathered as whole blocks of ``gcd(n_fft, hop)`` samples (a Gather of rows, not of single
samples). Everything after the power spectrum is LogMel's code path, with LogMel's own mel matrix.

Equivalence is not assumed: every export compares the ONNX graph against the PyTorch model that uses
:class:`LogMel` itself (max |Δprob| <= 1e-4 on real windows) and the tests compare the dB outputs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from vocalis.features import FeatureParams, LogMel
from vocalis.mel import mel_filterbank


def _split(n: int) -> tuple[int, int] | None:
    """``n = n1 * n2`` with ``n1`` the largest divisor <= sqrt(n); None when n is prime (no gain)."""
    n1 = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return (n1, n // n1) if n1 > 1 else None


def can_factor(params: FeatureParams) -> bool:
    """Whether the factored DFT applies (n_fft is not prime)."""
    return _split(params.n_fft) is not None


class FactoredLogMel(nn.Module):
    """Waveforms ``[batch, samples]`` -> log-mel ``[batch, 1, n_mels, frames]``: LogMel's numbers, faster."""

    window: torch.Tensor
    c1: torch.Tensor
    s1: torch.Tensor
    tw_re: torch.Tensor
    tw_im: torch.Tensor
    c2: torch.Tensor
    s2: torch.Tensor
    mel_t: torch.Tensor

    def __init__(self, params: FeatureParams | None = None) -> None:
        super().__init__()
        ref = LogMel(params)
        self.params = p = ref.params
        split = _split(p.n_fft)
        if split is None:
            raise ValueError(f"n_fft={p.n_fft} is prime: use LogMel")
        n1, n2 = split
        self.n1, self.n2 = n1, n2
        self.n_bins = ref.n_bins
        # LogMel computes the bins [lo, lo + n_bins) that some mel band uses; so does this module
        mel = mel_filterbank(p.sample_rate, p.n_fft, p.n_mels, p.f_min, p.f_max)
        lo = int(np.flatnonzero(mel.sum(axis=0) > 0)[0])
        self.k2_lo = lo // n1
        k2_hi = (lo + self.n_bins - 1) // n1 + 1
        self.offset = lo - self.k2_lo * n1
        block = math.gcd(p.n_fft, p.hop_length)
        self.block = block
        window = 0.5 - 0.5 * np.cos(2 * math.pi * np.arange(p.n_fft) / p.n_fft)  # periodic Hann, as LogMel
        # sample n = n2 * a + b (a < n1, b < n2): the frame as [b, a]; stage 1 is a DFT over a for every b
        a = np.arange(n1)
        ang1 = 2 * math.pi * np.outer(a, a) / n1  # [a, k1]
        twiddle = -2 * math.pi * np.outer(np.arange(n2), np.arange(n1)) / p.n_fft  # [b, k1]
        k2 = np.arange(self.k2_lo, k2_hi)
        ang2 = -2 * math.pi * np.outer(np.arange(n2), k2) / n2  # [b, k2]
        # separate real/imaginary products: measured faster in onnxruntime than one product on [re | im]
        consts = {
            "window": window.reshape(n1, n2).T,
            "c1": np.cos(ang1),
            "s1": -np.sin(ang1),
            "tw_re": np.cos(twiddle),
            "tw_im": np.sin(twiddle),
            "c2": np.cos(ang2),
            "s2": np.sin(ang2),
        }
        for key, value in consts.items():
            self.register_buffer(key, torch.tensor(value.copy(), dtype=torch.float32), persistent=False)
        self.register_buffer("mel_t", ref.mel_basis.t().contiguous(), persistent=False)  # LogMel's own
        self.n_k2 = len(k2)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Compute the log-mel spectrogram of a batch of mono waveforms (as :class:`LogMel` does)."""
        p, n1, n2, g = self.params, self.n1, self.n2, self.block
        batch = waveform.shape[0]
        pad = p.n_fft // 2
        x = nn.functional.pad(waveform, (pad, pad))  # constant (zero) padding, centred frames
        length = x.shape[-1]
        n_frames = 1 + (length - p.n_fft) // p.hop_length
        blocks = x[:, : (length // g) * g].reshape(batch, length // g, g)
        index = torch.arange(n_frames).unsqueeze(1) * (p.hop_length // g) + torch.arange(p.n_fft // g)
        frames = blocks[:, index].reshape(batch, n_frames, n1, n2).transpose(2, 3)  # [B, F, b, a]
        frames = frames * self.window
        re = torch.matmul(frames, self.c1)  # [B, F, b, k1]
        im = torch.matmul(frames, self.s1)
        t_re = (re * self.tw_re - im * self.tw_im).transpose(2, 3)  # [B, F, k1, b]
        t_im = (re * self.tw_im + im * self.tw_re).transpose(2, 3)
        x_re = torch.matmul(t_re, self.c2) - torch.matmul(t_im, self.s2)  # [B, F, k1, K2]
        x_im = torch.matmul(t_re, self.s2) + torch.matmul(t_im, self.c2)
        power = x_re * x_re + x_im * x_im  # bin k1 + n1 * k2
        power = power.transpose(2, 3).reshape(batch, n_frames, n1 * self.n_k2)
        power = power[:, :, self.offset : self.offset + self.n_bins]  # [B, F, bins]
        mel = torch.matmul(power, self.mel_t).transpose(1, 2)  # [B, n_mels, F]
        db = 10.0 * torch.log10(torch.clamp(mel, min=p.amin))
        peak = torch.amax(db, dim=(1, 2), keepdim=True)
        db = torch.maximum(db - peak, torch.full_like(db, -p.top_db))
        return db.unsqueeze(1)
