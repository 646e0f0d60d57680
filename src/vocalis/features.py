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
- ``stft="matmul"`` (inside the exported ONNX model): one Cooley-Tukey step (``n_fft = n1 * n2``) as a
  strided convolution and two matrix products. The first stage (``n1``-point DFTs over the blocks of a
  frame, the Hann window folded into its weights, only the ``n1 // 2 + 1`` outputs a real signal needs)
  is one grouped ``Conv`` over the signal read as blocks of ``n2`` samples: no frame is gathered or
  windowed as a tensor. The second stage (twiddles folded in, each stage-one output feeding its own bins
  and, by conjugate symmetry, its mirror's) is one batched product, then the power of each bin and one
  product with the mel matrix. Measured in onnxruntime on this project's 2-core machine
  (``benchmarks/bench_inference.py``) it is the fastest exact form: faster than the plain DFT as one
  matrix product, than the ONNX ``STFT`` operator (``torch.stft`` exports to it), than the ONNX ``DFT``
  operator (``torch.fft.rfft``) and than the earlier all-matmul factored forms.

:class:`StreamLogMel` (the exported graph's featurizer) takes streams: a row holding ``k`` windows at a
fixed hop gets its STFT frames computed once and the windows cut from the spectrogram; the frames at a
window's edges, which see the window's own zero padding, are computed per window, so each window's
log-mel is the one :class:`LogMel` computes on it alone.

Everything else (the bins kept, the mel basis, the dB conversion) is one code path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vocalis.contracts.features import FeatureParams as FeatureParams  # the parameters LogMel takes
from vocalis.mel import mel_filterbank

STFT_KINDS = ("fft", "matmul")


def _block_factor(p: FeatureParams) -> tuple[int, int]:
    """``n_fft = n1 * n2`` for the factored DFT: frames are read as ``n1`` blocks of ``n2`` samples, so
    ``n2`` must divide every frame start (the hop and the ``n_fft // 2`` centre padding); of those
    divisors, the one closest to ``sqrt(n_fft)`` (the fewest multiply-adds)."""
    g = math.gcd(p.n_fft, p.hop_length, p.n_fft // 2)
    n2 = min((d for d in range(1, g + 1) if g % d == 0), key=lambda d: abs(math.log(d / math.sqrt(p.n_fft))))
    return p.n_fft // n2, n2


@dataclass(frozen=True)
class StreamLayout:
    """Which frames of a window a stream shares with its neighbours, for windows ``hop`` samples apart.

    ``LogMel`` centres frame ``j`` of a window on the window's sample ``j * hop_length`` and zero-pads the
    window by ``n_fft // 2`` on each side. A frame that lies wholly inside the window (``j0 <= j <= j1``)
    holds the same samples as the stream's frame centred on the same absolute sample, so windows that
    overlap can share it; the few frames at a window's edges (``j < j0``, ``j > j1``: 2 + 2 at the
    defaults) see the window's zero padding and are computed per window. Windows must start a whole
    number ``stride`` of STFT hops apart.
    """

    window_samples: int
    hop_samples: int
    n_frames: int  # frames of one window
    stride: int  # window hop in STFT frames
    j0: int  # first interior frame
    j1: int  # last interior frame

    @property
    def edges(self) -> tuple[int, ...]:
        """The frames of a window computed on the window's own zero padding, in frame order."""
        return (*range(self.j0), *range(self.j1 + 1, self.n_frames))


def stream_layout(params: FeatureParams, window_samples: int, hop_samples: int) -> StreamLayout | None:
    """The sharing layout for windows of ``window_samples`` every ``hop_samples``, or ``None`` when the
    windows cannot share frames (the hop is not a whole number of STFT hops, the windows do not overlap or
    touch, or a window is shorter than one frame)."""
    p = params
    pad = p.n_fft // 2
    if hop_samples <= 0 or hop_samples % p.hop_length or hop_samples > window_samples:
        return None
    n_frames = 1 + window_samples // p.hop_length
    j0 = -(-pad // p.hop_length)
    j1 = (window_samples - (p.n_fft - pad)) // p.hop_length
    if j1 < j0:
        return None
    return StreamLayout(window_samples, hop_samples, n_frames, hop_samples // p.hop_length, j0, j1)


class LogMel(nn.Module):
    """Waveforms ``[batch, samples]`` -> log-mel ``[batch, 1, n_mels, frames]`` in dB (max 0 dB).

    Each window is referenced to its own maximum, so the output does not depend on the recording's gain.
    Only the frequency bins that some mel band uses are kept after the STFT (bins above ``f_max`` have zero
    weight in every band).

    Args:
        params: the featurizer parameters (defaults: the reference recipe's).
        stft: ``"fft"`` (``torch.stft``) or ``"matmul"`` (a factored DFT for the ONNX graph, see the
            module notes: ``n_fft = n1 * n2`` (1024 = 32 x 32); the signal read as blocks of ``n2``
            samples, ``[n2, blocks]``; stage one a ``Conv`` with ``n2`` groups (one per offset in a
            block), kernel ``n1`` blocks, stride one STFT hop, whose weights are the windowed real and
            imaginary ``n1``-point DFT rows ``k1 = 0 .. n1 // 2``; stage two one batched product per
            ``k1`` with the twiddles folded in; then each bin's power and the mel matrix. See
            :meth:`stream` for frames shared between overlapping windows.)
    """

    window: torch.Tensor
    mel_basis: torch.Tensor
    # the factored DFT's constants (stft="matmul" only)
    dft_conv: torch.Tensor
    stage2: torch.Tensor
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
            consts.update(self._factored_constants(window, mel))
        for key, value in consts.items():
            dtype = torch.int64 if value.dtype.kind == "i" else torch.float32
            self.register_buffer(key, torch.tensor(value.copy(), dtype=dtype), persistent=False)

    def _factored_constants(self, window: np.ndarray, mel: np.ndarray) -> dict[str, np.ndarray]:
        """The weights of the factored DFT (see the class notes), in float64 before the float32 cast."""
        p, lo, hi = self.params, self.lo, self.lo + self.n_bins
        n1, n2 = _block_factor(p)
        half = n1 // 2 + 1  # stage-one outputs of a real signal: k1 = 0 .. n1 // 2
        self.n1, self.n2, self.n_half = n1, n2, half
        q, r = np.arange(n1), np.arange(n2)  # frame sample n = n2 * q + r: block q, offset r
        # stage one, per offset r: windowed n1-point DFT rows, real and imaginary, over the block index q
        ang1 = 2 * math.pi * np.outer(np.arange(half), q) / n1  # [k1, q]
        win = window.reshape(n1, n2).T[:, None, None, :]  # [r, 1, 1, q]
        conv = np.stack([np.cos(ang1), -np.sin(ang1)])[None] * win  # [r, re|im, k1, q]
        # stage two: output k1 feeds its bins k = k1 + n1 * k2 and (the conjugate, X[n1 - k1] =
        # conj X[k1] for a real signal) those of n1 - k1; each bin's column pair [re | im]
        cols = []
        for k1 in range(half):
            mirror = n1 - k1 if 0 < k1 < n1 - k1 else None
            cols.append(
                [(k, False) for k in range(k1, hi, n1) if k >= lo]
                + ([(k, True) for k in range(mirror, hi, n1) if k >= lo] if mirror is not None else [])
            )
        m = max(len(c) for c in cols)
        self.m = m
        # (R + iI)(cos - i sin), I -> -I for the mirror: re = R cos +- I sin, im = -R sin +- I cos
        stage2 = np.zeros((half, 2, m, 2, n2))  # [k1, re|im out, bin, re|im in, r]
        mel_t = np.zeros((p.n_mels, half, m))
        for k1, bins in enumerate(cols):
            for c, (k, conj) in enumerate(bins):
                theta = 2 * math.pi * r * k / p.n_fft
                sign = -1.0 if conj else 1.0
                stage2[k1, 0, c, 0], stage2[k1, 0, c, 1] = np.cos(theta), sign * np.sin(theta)
                stage2[k1, 1, c, 0], stage2[k1, 1, c, 1] = -np.sin(theta), sign * np.cos(theta)
                mel_t[:, k1, c] = mel[:, k]
        return {
            "dft_conv": conv.reshape(n2 * 2 * half, 1, n1),
            "stage2": stage2.reshape(half, 2 * m, 2 * n2),
            "mel_t": mel_t.reshape(p.n_mels, half * m),
        }

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

    def blocks_mel(self, signal: torch.Tensor, stride: int) -> torch.Tensor:
        """Mel power ``[n_mels, frames]`` of the frames of the flat ``signal`` (a whole number of blocks of
        ``n2`` samples) that start every ``stride`` blocks from its first sample, by the factored DFT."""
        n2, half, m = self.n2, self.n_half, self.m
        blocks = signal.reshape(-1, n2).transpose(0, 1).unsqueeze(0)  # [1, r, block]
        z = nn.functional.conv1d(blocks, self.dft_conv, stride=stride, groups=n2)  # [1, (r, re|im, k1), f]
        f = z.shape[-1]
        # to [k1, (re|im, r), f]: moves whole rows of f values
        z = z.reshape(n2, 2, half, f).permute(2, 1, 0, 3).reshape(half, 2 * n2, f)
        y = torch.matmul(self.stage2, z)  # [k1, (re|im, bin), f]
        power = (y * y).reshape(half, 2, m, f).sum(dim=1)  # re^2 + im^2: [k1, bin, f]
        return torch.matmul(self.mel_t, power.reshape(half * m, f))

    def stream(self, waveform: torch.Tensor, window_samples: int, hop_samples: int) -> torch.Tensor:
        """Mel power ``[rows * k, n_mels, frames]`` of the ``k`` windows in each row of a stream.

        Each row of ``waveform`` ``[rows, samples]`` is a contiguous piece of audio holding ``k = 1 +
        (samples - window_samples) // hop_samples`` windows (samples past the last whole window are not
        used); windows come out row by row, in time order. Every window's mel power equals that of the
        window cut out and passed to :meth:`forward` alone: the frames inside a window are computed once
        for the stream and shared, the frames at its edges are computed on its own zero padding
        (:class:`StreamLayout`). ``stft="matmul"`` only; raises ``ValueError`` when the windows cannot
        share frames (see :func:`stream_layout`).
        """
        if self.stft != "matmul":
            raise ValueError("stream() needs stft='matmul'")
        p = self.params
        pad = p.n_fft // 2
        lay = stream_layout(self.params, window_samples, hop_samples)
        if lay is None:
            raise ValueError(
                f"windows of {window_samples} samples every {hop_samples} cannot share STFT frames "
                f"(hop_length {self.params.hop_length}, n_fft {self.params.n_fft})"
            )
        rows, samples = waveform.shape
        k = (samples - window_samples) // hop_samples + 1
        # the stream's frames: each row padded in front as LogMel pads a window, and to whole STFT hops,
        # so row i's frame t (centred on its sample t * hop_length) is frame i * per_row + t of the flat
        # signal; frames that straddle two rows are computed and never used
        x = nn.functional.pad(waveform, (pad, (-(samples + pad)) % p.hop_length))
        per_row = x.shape[1] // p.hop_length
        mel_stream = self.blocks_mel(x.reshape(-1), p.hop_length // self.n2)  # [n_mels, frames]
        n_stream = mel_stream.shape[1]
        # the edge frames of every window, sample by sample: the window's samples, zeros outside it
        signal = waveform.reshape(-1)
        row = torch.arange(rows).reshape(rows, 1)
        edges = torch.tensor(lay.edges)
        e = len(lay.edges)
        local = (edges * p.hop_length - pad).reshape(1, 1, e, 1) + torch.arange(p.n_fft)  # [1, 1, e, n_fft]
        first = row.reshape(rows, 1, 1, 1) * samples + (torch.arange(k) * hop_samples).reshape(1, k, 1, 1)
        inside = (local >= 0) & (local < window_samples)
        index = torch.where(inside, first + local, torch.zeros_like(local)).reshape(-1)
        edge_frames = signal[index] * inside.to(signal.dtype).reshape(-1).repeat(rows * k)
        mel_edges = self.blocks_mel(edge_frames, self.n1)  # one frame every n_fft samples
        mel = torch.cat([mel_stream, mel_edges], dim=1)  # [n_mels, stream frames + rows * k * e]
        # each window's frames: interior ones from its row's stream, edge ones its own
        j = torch.arange(lay.n_frames)
        interior = (j >= lay.j0) & (j <= lay.j1)
        edge_of = torch.cumsum((~interior).to(torch.int64), 0) - 1  # frame j -> its edge number
        w = torch.arange(k).reshape(1, k, 1)
        r = row.reshape(rows, 1, 1)
        pick = torch.where(
            interior, r * per_row + w * lay.stride + j, n_stream + (r * k + w) * e + edge_of
        )  # [rows, k, frames]
        picked = mel[:, pick.reshape(-1)].reshape(p.n_mels, rows * k, lay.n_frames)
        return picked.transpose(0, 1)

    def _matmul_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """Mel power ``[batch, n_mels, frames]`` through the factored DFT, window by window."""
        p = self.params
        batch, samples = waveform.shape
        pad = p.n_fft // 2
        n_frames = 1 + samples // p.hop_length
        # constant (zero) padding, centred frames; each row to whole STFT hops, so row i's frame t is
        # frame i * per_row + t of the flat signal
        x = nn.functional.pad(waveform, (pad, pad + (-(samples + 2 * pad)) % p.hop_length))
        per_row = x.shape[1] // p.hop_length
        mel = self.blocks_mel(x.reshape(-1), p.hop_length // self.n2)
        pick = torch.arange(batch).reshape(-1, 1) * per_row + torch.arange(n_frames)
        return mel[:, pick.reshape(-1)].reshape(p.n_mels, batch, n_frames).transpose(0, 1)

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


class StreamLogMel(nn.Module):
    """:class:`LogMel` on streams: ``[rows, samples]`` -> log-mel ``[rows * k, 1, n_mels, frames]``.

    Each row is a contiguous piece of audio holding ``k = 1 + (samples - window_samples) // hop_samples``
    windows (see :meth:`LogMel.stream`); a row of exactly ``window_samples`` is one window, computed as
    :class:`LogMel` computes it. The module exists so that the exported graph's featurizer nodes carry the
    ``featurizer`` name scope (quantization leaves them in float by it).
    """

    def __init__(self, params: FeatureParams | None, window_samples: int, hop_samples: int) -> None:
        super().__init__()
        self.logmel = LogMel(params, stft="matmul")
        if stream_layout(self.logmel.params, window_samples, hop_samples) is None:
            raise ValueError(
                f"windows of {window_samples} samples every {hop_samples} cannot share STFT frames"
            )
        self.window_samples = window_samples
        self.hop_samples = hop_samples

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Log-mel of every window of every row, row by row in time order."""
        mel = self.logmel.stream(waveform, self.window_samples, self.hop_samples)
        return self.logmel.to_db(mel).unsqueeze(1)
