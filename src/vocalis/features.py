"""THE featurizer: waveform -> log-mel spectrogram, defined once as a torch module.

Data preparation, training and the exported ONNX model all run this module, so what the model learned
on is exactly what it sees in production. The defaults are the seed's: 32 kHz, n_fft 1024, hop 320,
64 mel bands from 50 to 14000 Hz, power converted to dB relative to the maximum of each window with an
80 dB floor (``librosa.power_to_db(S, ref=np.max, top_db=80)``).

The short-time Fourier transform is ``torch.stft`` with a periodic Hann window, centred frames and zero
padding: the numbers of ``librosa.stft(center=True, pad_mode="constant")``. It is an FFT in PyTorch and
exports (``torch.onnx.export(..., dynamo=True)``) to the ONNX ``STFT`` operator, which onnxruntime also
runs as an FFT, so the featurizer costs the same few milliseconds per window in training and in the
exported model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from vocalis.mel import mel_filterbank


@dataclass(frozen=True)
class FeatureParams:
    """Parameters of the log-mel featurizer. Stored in the feature cache and in every model card."""

    sample_rate: int = 32_000
    n_fft: int = 1024
    hop_length: int = 320
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 14_000.0
    top_db: float = 80.0
    amin: float = 1e-10

    def __post_init__(self) -> None:
        if self.f_max > self.sample_rate / 2:
            raise ValueError(
                f"f_max={self.f_max} Hz is above the Nyquist frequency {self.sample_rate / 2} Hz"
            )
        if not 0 <= self.f_min < self.f_max:
            raise ValueError(f"need 0 <= f_min < f_max, got f_min={self.f_min}, f_max={self.f_max}")
        if self.hop_length <= 0 or self.n_fft <= 0 or self.n_mels <= 0:
            raise ValueError("n_fft, hop_length and n_mels must be positive")

    def n_frames(self, num_samples: int) -> int:
        """Frames produced for a waveform of ``num_samples`` (centred frames, as librosa)."""
        return 1 + num_samples // self.hop_length

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for JSON files and model cards."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureParams:
        """Build from a dict, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class LogMel(nn.Module):
    """Waveforms ``[batch, samples]`` -> log-mel ``[batch, 1, n_mels, frames]`` in dB (max 0 dB).

    Each window is referenced to its own maximum, so the output does not depend on the recording's gain.
    Only the frequency bins that some mel band uses are kept after the STFT (bins above ``f_max`` have zero
    weight in every band).
    """

    window: torch.Tensor
    mel_basis: torch.Tensor

    def __init__(self, params: FeatureParams | None = None) -> None:
        super().__init__()
        self.params = p = params or FeatureParams()
        mel = mel_filterbank(p.sample_rate, p.n_fft, p.n_mels, p.f_min, p.f_max)  # [n_mels, 1 + n_fft // 2]
        used = np.flatnonzero(mel.sum(axis=0) > 0)
        self.lo = int(used[0])
        self.n_bins = int(used[-1]) + 1 - self.lo
        # periodic Hann window, as scipy.signal.get_window("hann", n_fft) and librosa use
        window = 0.5 - 0.5 * np.cos(2 * math.pi * np.arange(p.n_fft) / p.n_fft)
        self.register_buffer("window", torch.tensor(window, dtype=torch.float32), persistent=False)
        self.register_buffer(
            "mel_basis",
            torch.tensor(mel[:, self.lo : self.lo + self.n_bins], dtype=torch.float32),
            persistent=False,
        )

    def power(self, waveform: torch.Tensor) -> torch.Tensor:
        """Power spectrum ``[batch, bins, frames]`` of the used bins (centred frames, zero padding)."""
        p = self.params
        spec = torch.stft(
            waveform,
            n_fft=p.n_fft,
            hop_length=p.hop_length,
            window=self.window,
            center=True,
            pad_mode="constant",  # librosa's default since 0.10
            return_complex=True,
        )[:, self.lo : self.lo + self.n_bins]
        return spec.real.square() + spec.imag.square()

    def to_db(self, mel: torch.Tensor) -> torch.Tensor:
        """Mel power ``[batch, n_mels, frames]`` -> dB referenced to each window's maximum, floored."""
        p = self.params
        db = 10.0 * torch.log10(torch.clamp(mel, min=p.amin))
        # ref = max of each window: the window's loudest cell becomes 0 dB, then an 80 dB floor
        peak = torch.amax(db, dim=(1, 2), keepdim=True)
        return torch.maximum(db - peak, torch.full_like(db, -p.top_db))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Compute the log-mel spectrogram of a batch of mono waveforms."""
        return self.to_db(torch.matmul(self.mel_basis, self.power(waveform))).unsqueeze(1)
