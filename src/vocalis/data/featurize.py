"""Featurizing the overlapping windows of one clip with :class:`vocalis.features.LogMel`, each frame once.

Windows that overlap (3 s windows every 1.5 s) share most of their STFT frames: :func:`clip_windows`
computes the clip's power spectrum once with ``LogMel.power`` and recomputes only the frames at each
window's edges, where the window's own zero padding shows. The mel projection and the dB conversion are
LogMel's own (``mel_basis``, ``to_db``), so the result is ``LogMel()(stacked windows)`` to float rounding
(the tests bound the difference at 1e-3 dB).
"""

from __future__ import annotations

import numpy as np
import torch

from vocalis.contracts.features import FeatureParams
from vocalis.features import LogMel


def shares_frames(params: FeatureParams, window_samples: int, hop_samples: int) -> bool:
    """Whether window starts at multiples of ``hop_samples`` fall on the featurizer's frame grid (the hop is
    a whole number of featurizer hops), so that :func:`clip_windows` can compute each frame once."""
    return hop_samples % params.hop_length == 0 and window_samples > params.n_fft


def clip_windows(
    net: LogMel, x: np.ndarray, starts: np.ndarray, window_samples: int, num_samples: int | None = None
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
    power = net.power(seg[None])[0]  # [bins, frames]
    total = (end - s0) // hop + 1
    # frames past the clip's end hold only zeros: their mel power stays exactly zero
    clip_mel = torch.zeros(p.n_mels, total)
    m = min(power.shape[1], total)
    clip_mel[:, :m] = torch.matmul(net.mel_basis, power[:, :m])
    step = (int(starts[1]) - s0) // hop if len(starts) > 1 else 1
    mel = clip_mel.unfold(1, n_frames, step)[:, : len(starts)].permute(1, 0, 2).contiguous()  # [n, mels, F]
    # frames whose span [hop*j - half, hop*j + half) leaves the window see its zero padding
    edge = [j for j in range(n_frames) if hop * j - half < 0 or hop * j + half > w]
    padded = torch.zeros(len(starts), w + 2 * half)
    for k, s in enumerate(starts.tolist()):
        n_real = max(0, min(w, seg_len - (s - s0)))
        padded[k, half : half + n_real] = seg[s - s0 : s - s0 + n_real]
    frames = torch.stack([padded[:, hop * j : hop * j + n_fft] for j in edge], dim=1) * net.window
    espec = torch.fft.rfft(frames, dim=-1)[..., net.lo : net.lo + net.n_bins]  # [n, n_edge, bins]
    emel = torch.matmul(espec.real.square() + espec.imag.square(), net.mel_basis.T)  # [n, n_edge, mels]
    mel[:, :, edge] = emel.transpose(1, 2)
    return net.to_db(mel)
