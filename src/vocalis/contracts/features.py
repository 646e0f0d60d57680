"""The log-mel featurizer's parameters (no torch: the featurizer itself is :class:`vocalis.features.LogMel`).

Stored in the feature cache (``params.json``), in every checkpoint's hyper-parameters and in every model
card, and passed between stages as this object, never as a loose dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class FeatureParams:
    """Parameters of the log-mel featurizer (defaults: the reference recipe's 32 kHz, 64-band log-mel)."""

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
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureParams:
        """Build from a mapping, ignoring keys this version does not know (``ValueError`` on bad values)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The parameter names, in order."""
        return tuple(f.name for f in fields(cls))
