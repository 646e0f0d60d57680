"""Cutting waveforms into fixed-length analysis windows, and the short-audio rule (numpy only).

One definition of the window arithmetic, shared by data preparation (training windows), the predictor
(inference windows) and the service, so that a window at ``start_s`` means the same samples everywhere.

A clip shorter than one window gives one window, zero-padded at the end. A longer clip gives windows every
``hop`` seconds; the last, partial window is zero-padded so that the end of the clip is covered, and its end
time is the end of the audio.

The short-audio rule, the same for ``vocalis data prepare``, ``vocalis predict`` and the service: a
recording is refused only when it cannot be featurized at all, i.e. when it has fewer than
:data:`MIN_AUDIO_SAMPLES` samples at the model's rate. Anything longer is zero-padded to a window, so a
real 33 ms click is predicted exactly as training saw it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vocalis.errors import AudioTooShortError

#: the fewest samples (at the featurizer's rate) a recording must have: the featurizer zero-pads every
#: window to its full length, so one real sample is enough to compute a log-mel; zero is not
MIN_AUDIO_SAMPLES = 1


def require_featurizable(num_samples: int, name: str, sample_rate: int | None = None) -> None:
    """Raise :class:`~vocalis.errors.AudioTooShortError` when a recording of ``num_samples`` samples (at the
    model's rate) cannot be featurized; every longer recording is accepted and zero-padded."""
    if num_samples < MIN_AUDIO_SAMPLES:
        at = f" at {sample_rate} Hz" if sample_rate else ""
        raise AudioTooShortError(
            name, f"too short: {num_samples} samples{at}, at least {MIN_AUDIO_SAMPLES} needed"
        )


@dataclass(frozen=True)
class WindowSpec:
    """Window and hop in seconds at a sample rate (both must be given; no overlap when they are equal)."""

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

    def ends(self, starts: np.ndarray, num_samples: int) -> np.ndarray:
        """End sample of the windows starting at ``starts``: a window's end, or the end of the audio for
        one that runs past it (the zero padding is not part of the recording)."""
        return np.minimum(np.asarray(starts, dtype=np.int64) + self.window_samples, max(num_samples, 1))

    def bounds_seconds(self, num_samples: int) -> list[tuple[float, float]]:
        """``(start_s, end_s)`` of every window; the last one ends at the end of the audio."""
        starts = self.starts(num_samples)
        sr = self.sample_rate
        ends = self.ends(starts, num_samples)
        return [(s / sr, e / sr) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]

    def cut(self, waveform: np.ndarray) -> np.ndarray:
        """Cut a mono waveform into ``[n_windows, window_samples]`` float32, zero-padding the last."""
        w = self.window_samples
        starts = self.starts(len(waveform))
        total = int(starts[-1]) + w
        padded = np.zeros(max(total, len(waveform)), dtype=np.float32)
        padded[: len(waveform)] = waveform
        idx = starts[:, None] + np.arange(w)[None, :]
        return padded[idx]
