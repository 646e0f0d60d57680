"""Augmentations applied to log-mel batches on the training device: SpecAugment, dynamic-range "gain", mixup.

They act on the cached features ``[B, 1, n_mels, frames]`` (dB, per-window max at 0 dB, floor at
``-top_db``), so they cost nothing in the data loader and run on the GPU when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AugmentConfig:
    """What to apply to each training batch. Zero disables an augmentation."""

    freq_masks: int = 0
    freq_width: int = 8
    time_masks: int = 0
    time_width: int = 20
    gain_db: float = 0.0
    mixup_alpha: float = 0.0
    mixup_prob: float = 1.0


def _mask_axis(x: torch.Tensor, n_masks: int, max_width: int, axis: int, fill: torch.Tensor) -> torch.Tensor:
    """Set ``n_masks`` random bands of width ``[0, max_width]`` along ``axis`` (2: mels, 3: frames)."""
    b, size = x.shape[0], x.shape[axis]
    max_width = min(max_width, size)
    if n_masks <= 0 or max_width <= 0:
        return x
    pos = torch.arange(size, device=x.device)
    keep = torch.ones(b, size, dtype=torch.bool, device=x.device)
    for _ in range(n_masks):
        width = torch.randint(0, max_width + 1, (b, 1), device=x.device)
        start = (torch.rand(b, 1, device=x.device) * (size - width + 1)).floor().long()
        keep &= ~((pos[None, :] >= start) & (pos[None, :] < start + width))
    shape = [b, 1, 1, 1]
    shape[axis] = size
    keep = keep.view(shape)
    return torch.where(keep, x, fill)


def spec_augment(
    x: torch.Tensor, freq_masks: int, freq_width: int, time_masks: int, time_width: int
) -> torch.Tensor:
    """SpecAugment (Park et al. 2019) without time warping: random frequency and time bands are set to
    each example's minimum (the silence floor of a max-referenced dB spectrogram)."""
    fill = x.amin(dim=(1, 2, 3), keepdim=True)
    x = _mask_axis(x, freq_masks, freq_width, 2, fill)
    return _mask_axis(x, time_masks, time_width, 3, fill)


def dynamic_range_gain(x: torch.Tensor, gain_db: float, top_db: float) -> torch.Tensor:
    """Random "gain" for max-referenced dB features.

    A gain applied to the waveform is an exact no-op here: the featurizer subtracts each window's maximum,
    so a constant dB offset cancels. What a quieter or noisier recording does change is how much of the
    call rises above the floor. So each example gets an offset ``g`` drawn from ``[-gain_db, 0]`` dB,
    added before the ``-top_db`` floor clamp and then re-referenced to the maximum:
    ``max(x + g, -top_db) - g``, i.e. the floor rises by ``|g|`` dB while the peak stays at 0 dB, exactly
    as the featurizer would produce it at inference.
    """
    if gain_db <= 0:
        return x
    g = -torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) * gain_db
    return torch.clamp(x + g, min=-top_db) - g


def mixup(
    x: torch.Tensor, y: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mixup (Zhang et al. 2018): convex combinations of example pairs.

    Returns the mixed batch, both label vectors and the weight ``lam`` of the first; the loss is
    ``lam * loss(y_a) + (1 - lam) * loss(y_b)``.
    """
    lam = float(torch.distributions.Beta(alpha, alpha).sample().item())
    perm = torch.randperm(x.shape[0], device=x.device)
    return lam * x + (1.0 - lam) * x[perm], y, y[perm], lam
