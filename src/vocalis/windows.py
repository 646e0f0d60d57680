"""Cutting waveforms into fixed-length analysis windows (numpy only).

One definition of the window arithmetic, shared by data preparation (training windows) and by the
predictor (inference windows), so that a window at ``start_s`` means the same samples everywhere.

A clip shorter than one window gives one window, zero-padded at the end. A longer clip gives windows every
``hop`` seconds; the last, partial window is zero-padded so that the end of the clip is covered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowSpec:
    """Window and hop in seconds at a sample rate. ``hop`` defaults to ``window`` (no overlap)."""

    window_s: float
    hop_s: float
    sample_rate: int

    def __post_init__(self) -> None:
        if self.window_s <= 0:
            raise ValueError(f"window must be positive, got {self.window_s} s")
        if self.hop_s <= 0:
            raise ValueError(f"hop must be positive, got {self.hop_s} s")

    @property
    def window_samples(self) -> int:
        """Samples in one window."""
        return round(self.window_s * self.sample_rate)

    @property
    def hop_samples(self) -> int:
        """Samples between the starts of consecutive windows."""
        return max(1, round(self.hop_s * self.sample_rate))

    def count(self, num_samples: int) -> int:
        """Number of windows covering ``num_samples`` samples (at least one)."""
        w, h = self.window_samples, self.hop_samples
        if num_samples <= w:
            return 1
        return 1 + math.ceil((num_samples - w) / h)

    def starts(self, num_samples: int) -> np.ndarray:
        """Start sample of every window."""
        return np.arange(self.count(num_samples), dtype=np.int64) * self.hop_samples

    def bounds_seconds(self, num_samples: int) -> list[tuple[float, float]]:
        """``(start_s, end_s)`` of every window; the last one ends at the end of the audio."""
        sr = self.sample_rate
        return [
            (s / sr, min(s + self.window_samples, max(num_samples, 1)) / sr)
            for s in self.starts(num_samples).tolist()
        ]

    def cut(self, waveform: np.ndarray) -> np.ndarray:
        """Cut a mono waveform into ``[n_windows, window_samples]`` float32, zero-padding the last."""
        w = self.window_samples
        starts = self.starts(len(waveform))
        total = int(starts[-1]) + w
        padded = np.zeros(max(total, len(waveform)), dtype=np.float32)
        padded[: len(waveform)] = waveform
        idx = starts[:, None] + np.arange(w)[None, :]
        return padded[idx]
