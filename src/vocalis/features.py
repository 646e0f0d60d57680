"""THE featurizer: waveform -> log-mel spectrogram, defined once as a torch module.

Data preparation, training and the exported ONNX model all run this module, so what the model learned
on is exactly what it sees in production. Its parameters are
:class:`~vocalis.contracts.features.FeatureParams` (torch-free, re-exported here); the defaults are the
reference recipe's: 32 kHz, n_fft 1024, hop 320, 64 mel bands from 50 to 14000 Hz, power converted to dB
relative to the maximum of each window with an 80 dB floor
(``librosa.power_to_db(S, ref=np.max, top_db=80)``).

The short-time Fourier transform is that of ``librosa.stft(center=True, pad_mode="constant")`` with a
periodic Hann window, computed one of two ways that give the same numbers (to float32 rounding, tested):

- ``stft="fft"`` (the default: preparation, training, evaluation): ``torch.stft``, an FFT in PyTorch;
- ``stft="matmul"`` (inside the exported ONNX model): one Cooley-Tukey step written as matrix products.
  ``torch.stft`` also exports, to the ONNX ``STFT`` operator, but onnxruntime runs that 1.5-1.75x slower
  than these plain MatMul/Gather ops (measured in ``benchmarks/bench_inference.py``).

Everything else (the bins kept, the mel basis, the dB conversion) is one code path.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from vocalis.contracts.features import FeatureParams as FeatureParams  # the parameters LogMel takes
from vocalis.mel import mel_filterbank

STFT_KINDS = ("fft", "matmul")


def _factor(n: int) -> tuple[int, int]:
    """``n = n1 * n2`` with ``n1`` the largest divisor <= sqrt(n) (``(1, n)`` when n is prime)."""
    n1 = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return n1, n // n1


class LogMel(nn.Module):
    """Waveforms ``[batch, samples]`` -> log-mel ``[batch, 1, n_mels, frames]`` in dB (max 0 dB).

    Each window is referenced to its own maximum, so the output does not depend on the recording's gain.
    Only the frequency bins that some mel band uses are kept after the STFT (bins above ``f_max`` have zero
    weight in every band).

    Args:
        params: the featurizer parameters (defaults: the reference recipe's).
        stft: ``"fft"`` (``torch.stft``) or ``"matmul"`` (a factored DFT as matrix products, for the ONNX
            graph: ``n_fft = n1 * n2`` (1024 = 32 x 32), each frame read as an ``[n2, n1]`` matrix, ``n2``
            DFTs of length ``n1`` in one matmul, twiddle factors, then ``n1`` DFTs of length ``n2`` that
            compute only the rows holding used bins: ``n_fft * (n1 + n2)`` multiply-adds a frame).
    """

    window: torch.Tensor
    mel_basis: torch.Tensor
    # the factored DFT's constants (stft="matmul" only)
    window_ba: torch.Tensor
    c1: torch.Tensor
    s1: torch.Tensor
    tw_re: torch.Tensor
    tw_im: torch.Tensor
    c2: torch.Tensor
    s2: torch.Tensor
    mel_t: torch.Tensor

    def __init__(self, params: FeatureParams | None = None, stft: str = "fft") -> None:
        super().__init__()
        if stft not in STFT_KINDS:
            raise ValueError(f"stft must be one of {STFT_KINDS}, got '{stft}'")
        self.stft = stft
        self.params = p = params or FeatureParams()
        mel = mel_filterbank(p.sample_rate, p.n_fft, p.n_mels, p.f_min, p.f_max)  # [n_mels, 1 + n_fft // 2]
        used = np.flatnonzero(mel.sum(axis=0) > 0)
        self.lo = lo = int(used[0])
        self.n_bins = int(used[-1]) + 1 - lo
        # periodic Hann window, as scipy.signal.get_window("hann", n_fft) and librosa use
        window = 0.5 - 0.5 * np.cos(2 * math.pi * np.arange(p.n_fft) / p.n_fft)
        consts: dict[str, np.ndarray] = {"window": window, "mel_basis": mel[:, lo : lo + self.n_bins]}
        if stft == "matmul":
            n1, n2 = _factor(p.n_fft)
            self.n1, self.n2 = n1, n2
            # output bin k = k1 + n1 * k2: only the k2 rows that hold the used bins are computed
            k2_lo, k2_hi = lo // n1, (lo + self.n_bins - 1) // n1 + 1
            self.n_k2 = k2_hi - k2_lo
            self.offset = lo - k2_lo * n1
            # frames are gathered as whole blocks of gcd(n_fft, hop) samples (a Gather of rows)
            self.block = math.gcd(p.n_fft, p.hop_length)
            a = np.arange(n1)
            ang1 = 2 * math.pi * np.outer(a, a) / n1  # [a, k1]
            twiddle = -2 * math.pi * np.outer(np.arange(n2), a) / p.n_fft  # [b, k1]
            ang2 = -2 * math.pi * np.outer(np.arange(n2), np.arange(k2_lo, k2_hi)) / n2  # [b, k2]
            consts.update(
                window_ba=window.reshape(n1, n2).T,  # sample n = n2 * a + b: the frame as [b, a]
                c1=np.cos(ang1),
                s1=-np.sin(ang1),
                tw_re=np.cos(twiddle),
                tw_im=np.sin(twiddle),
                c2=np.cos(ang2),
                s2=np.sin(ang2),
                mel_t=mel[:, lo : lo + self.n_bins].T,
            )
        for key, value in consts.items():
            self.register_buffer(key, torch.tensor(value.copy(), dtype=torch.float32), persistent=False)

    def power(self, waveform: torch.Tensor) -> torch.Tensor:
        """Power spectrum ``[batch, bins, frames]`` of the used bins, by ``torch.stft``."""
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

    def _matmul_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """Mel power ``[batch, n_mels, frames]`` through the factored DFT (the ONNX form)."""
        p, n1, n2, g = self.params, self.n1, self.n2, self.block
        batch = waveform.shape[0]
        pad = p.n_fft // 2
        x = nn.functional.pad(waveform, (pad, pad))  # constant (zero) padding, centred frames
        length = x.shape[-1]
        n_frames = 1 + (length - p.n_fft) // p.hop_length
        blocks = x[:, : (length // g) * g].reshape(batch, length // g, g)
        index = torch.arange(n_frames).unsqueeze(1) * (p.hop_length // g) + torch.arange(p.n_fft // g)
        frames = blocks[:, index].reshape(batch, n_frames, n1, n2).transpose(2, 3) * self.window_ba
        re = torch.matmul(frames, self.c1)  # [B, F, b, k1]
        im = torch.matmul(frames, self.s1)
        t_re = (re * self.tw_re - im * self.tw_im).transpose(2, 3)  # [B, F, k1, b]
        t_im = (re * self.tw_im + im * self.tw_re).transpose(2, 3)
        x_re = torch.matmul(t_re, self.c2) - torch.matmul(t_im, self.s2)  # [B, F, k1, k2]
        x_im = torch.matmul(t_re, self.s2) + torch.matmul(t_im, self.c2)
        power = (x_re * x_re + x_im * x_im).transpose(2, 3).reshape(batch, n_frames, n1 * self.n_k2)
        power = power[:, :, self.offset : self.offset + self.n_bins]  # [B, F, bins]
        return torch.matmul(power, self.mel_t).transpose(1, 2)

    def to_db(self, mel: torch.Tensor) -> torch.Tensor:
        """Mel power ``[batch, n_mels, frames]`` -> dB referenced to each window's maximum, floored."""
        p = self.params
        db = 10.0 * torch.log10(torch.clamp(mel, min=p.amin))
        # ref = max of each window: the window's loudest cell becomes 0 dB, then an 80 dB floor
        peak = torch.amax(db, dim=(1, 2), keepdim=True)
        return torch.maximum(db - peak, torch.full_like(db, -p.top_db))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Compute the log-mel spectrogram of a batch of mono waveforms."""
        if self.stft == "matmul":
            mel = self._matmul_mel(waveform)
        else:
            mel = torch.matmul(self.mel_basis, self.power(waveform))
        return self.to_db(mel).unsqueeze(1)
