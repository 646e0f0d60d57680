"""A compact CNN sized for CPU training: the demo default."""

from __future__ import annotations

import torch
from torch import nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        # ceil_mode: odd sizes never shrink to zero, so short windows and few mel bands still work
        nn.MaxPool2d(2, ceil_mode=True),
    )


class CompactCNN(nn.Module):
    """A strided stem, four conv blocks (widths ``width * [1, 2, 4, 8]``), global mean+max pooling, a
    linear head.

    The stem's stride 2 quarters the work of the first (most expensive) block: at 64 mels x 301 frames and
    ``width=16`` a forward pass costs about 70 M multiply-adds, ``width=8`` about 18 M. Global pooling
    makes the network accept any number of frames; ``n_mels``/``n_frames`` are accepted for a uniform
    constructor signature.
    """

    def __init__(
        self,
        n_classes: int,
        n_mels: int = 64,
        n_frames: int = 301,
        width: int = 16,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if n_mels < 16:
            raise ValueError(f"CompactCNN needs at least 16 mel bands, got {n_mels}")
        widths = [width, width * 2, width * 4, width * 8]
        self.norm = nn.BatchNorm2d(1)  # per-input normalisation of the dB scale
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        c_in = width
        for w in widths:
            layers.append(_block(c_in, w))
            c_in = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * c_in, n_classes))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer: pooled features ``[B, 2 * width * 8]`` (mean and max), before the head."""
        h = self.features(self.stem(self.norm(x)))
        return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of log-mels ``[B, 1, n_mels, frames]``."""
        return self.head(self.embed(x))
