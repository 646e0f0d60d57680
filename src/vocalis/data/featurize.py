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
