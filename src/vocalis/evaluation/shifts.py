"""Accuracy under controlled distribution shifts: how the model degrades when the recordings change.

A *shift* transforms a whole recording (mono, at the model's rate) the way a change in the field would:

- ``noise``: white noise at a signal-to-noise ratio of ``strength`` dB (lower: noisier; 0 dB: noise as
  loud as the recording);
- ``gain``: ``strength`` dB of gain, clipped to [-1, 1] as a recorder's converter clips (negative: quieter);
- ``lowpass``: an 8th-order Butterworth low-pass at ``strength`` Hz (a band-limited microphone or codec);
- ``resample``: a sample-rate mismatch: the recording resampled as if made at ``strength`` times the
  model's rate and played at the model's rate, so pitch and tempo scale by ``strength`` (0.9: 10 % lower
  and slower), as a file whose header claims the wrong rate;
- ``timeshift``: ``strength`` seconds of silence before the recording (the call starts later in the
  window than in training, where recordings start at a window's start).

:func:`shift_accuracy` scores recordings under a list of strengths with any model given as a function
from a waveform to its mean class probabilities; :func:`evaluate_shifts` does it for a run's checkpoint
on a split of its feature cache (``vocalis evaluate RUN --shift KIND --strength S``). The recording's
prediction is the mean of its windows' probabilities, as ``clip_accuracy`` in
:mod:`vocalis.evaluation.evaluate` scores clips.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vocalis import audio
from vocalis.errors import CacheError, ConfigError, VocalisError

log = logging.getLogger(__name__)

SHIFT_KINDS: tuple[str, ...] = ("noise", "gain", "lowpass", "resample", "timeshift")
#: strengths the study measures when none are given, mildest first
DEFAULT_STRENGTHS: dict[str, tuple[float, ...]] = {
    "noise": (30.0, 20.0, 10.0, 0.0, -10.0),
    "gain": (-30.0, -15.0, 10.0, 20.0, 30.0),
    "lowpass": (8000.0, 4000.0, 2000.0, 1000.0),
    "resample": (0.95, 0.9, 1.1, 0.8, 1.25),
    "timeshift": (0.25, 0.5, 1.0, 2.0),
}
#: the unit of each kind's strength, for tables and plots
STRENGTH_UNITS: dict[str, str] = {
    "noise": "SNR dB",
    "gain": "dB",
    "lowpass": "cutoff Hz",
    "resample": "rate factor",
    "timeshift": "s of leading silence",
}

ProbsOf = Callable[[np.ndarray], np.ndarray]


def default_strengths(kind: str, sample_rate: int) -> list[float]:
    """:data:`DEFAULT_STRENGTHS` of ``kind`` that make sense at ``sample_rate`` (cutoffs below Nyquist)."""
    return [s for s in DEFAULT_STRENGTHS[kind] if kind != "lowpass" or s < sample_rate / 2]


def check_shift(kind: str, strength: float, sample_rate: int) -> None:
    """:class:`ConfigError` naming ``--shift``/``--strength`` when the pair makes no sense."""
    if kind not in SHIFT_KINDS:
        raise ConfigError(f"--shift: '{kind}' is not one of {list(SHIFT_KINDS)}")
    if not np.isfinite(strength):
        raise ConfigError(f"--strength: {strength} is not a finite number")
    if kind == "lowpass" and not 0 < strength < sample_rate / 2:
        raise ConfigError(
            f"--strength: a low-pass cutoff must be in (0, {sample_rate / 2:g}) Hz, got {strength}"
        )
    if kind == "resample" and not 0.1 <= strength <= 10:
        raise ConfigError(f"--strength: a resample factor must be in [0.1, 10], got {strength}")
    if kind == "timeshift" and strength < 0:
        raise ConfigError(f"--strength: a time shift must be >= 0 s, got {strength}")


def apply_shift(wave: np.ndarray, kind: str, strength: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """``wave`` (mono float32 at ``sample_rate``) under the shift ``kind`` of ``strength`` (module notes)."""
    check_shift(kind, strength, sample_rate)
    x = np.asarray(wave, dtype=np.float32)
    if kind == "noise":
        power = float(np.mean(x.astype(np.float64) ** 2)) or 1e-10
        rng = np.random.default_rng(seed)
        noise = rng.standard_normal(x.size) * np.sqrt(power / 10 ** (strength / 10))
        y = x + noise
        return (y / max(1.0, float(np.abs(y).max()))).astype(np.float32)  # never clip: that is 'gain'
    if kind == "gain":
        return np.clip(x * 10 ** (strength / 20), -1.0, 1.0).astype(np.float32)
    if kind == "lowpass":
        from scipy.signal import butter, sosfiltfilt

        sos = butter(8, strength, btype="low", fs=sample_rate, output="sos")
        return sosfiltfilt(sos, x).astype(np.float32) if x.size > 54 else x  # filtfilt's padding needs 54
    if kind == "resample":
        # sr / strength samples per second of audio, read at sr: every frequency times strength
        return audio.resample(x, sample_rate, max(1, round(sample_rate / strength)))
    pad = np.zeros(round(strength * sample_rate), dtype=np.float32)  # timeshift
    return np.concatenate([pad, x])


@dataclass
class Recordings:
    """Decoded recordings of a split: mono waveforms at ``sample_rate`` and their class indices."""

    waves: list[np.ndarray]
    labels: np.ndarray
    paths: list[str]
    sample_rate: int

    def __len__(self) -> int:
        return len(self.waves)


def split_recordings(
    cache_dir: str | Path, split: str, classes: Sequence[str], sample_rate: int, limit: int | None = None
) -> Recordings:
    """Decode each recording of ``split`` in the cache manifest once (one bad file is skipped, logged)."""
    manifest_path = Path(cache_dir) / "manifest.csv"
    if not manifest_path.is_file():
        raise CacheError(f"{manifest_path}: no feature-cache manifest")
    manifest = pd.read_csv(manifest_path)
    clips = manifest[manifest["split"] == split].drop_duplicates("path").sort_values("path")
    if clips.empty:
        raise CacheError(f"{manifest_path}: no recording in split '{split}'")
    if limit is not None:
        clips = clips.head(limit)
    index = {c: i for i, c in enumerate(classes)}
    waves, labels, paths = [], [], []
    for clip in clips.itertuples(index=False):
        try:
            waves.append(audio.load(str(clip.path), sample_rate))
        except (VocalisError, OSError, ValueError) as exc:
            log.warning("shift study: skipping %s (%s)", clip.path, exc)
            continue
        labels.append(index[str(clip.label)])
        paths.append(str(clip.path))
    if not waves:
        raise CacheError(f"{manifest_path}: none of the '{split}' recordings could be decoded")
    return Recordings(waves, np.asarray(labels, dtype=np.int64), paths, sample_rate)


def shift_accuracy(
    recordings: Recordings,
    probs_of: ProbsOf,
    kind: str,
    strengths: Sequence[float],
    *,
    seed: int = 0,
    include_clean: bool = True,
) -> list[dict[str, Any]]:
    """Recording accuracy under ``kind`` at each strength (and unshifted first, ``strength`` None)."""
    sr = recordings.sample_rate
    for s in strengths:
        check_shift(kind, float(s), sr)
    settings: list[float | None] = [None, *strengths] if include_clean else list(strengths)
    out = []
    for strength in settings:
        hits = 0
        for i, (wave, label) in enumerate(zip(recordings.waves, recordings.labels, strict=True)):
            x = wave if strength is None else apply_shift(wave, kind, float(strength), sr, seed=seed + i)
            hits += int(np.argmax(probs_of(x)) == label)
        acc = hits / len(recordings)
        log.info("shift %s %s: accuracy %.4f on %d recordings", kind, strength, acc, len(recordings))
        out.append({"shift": kind if strength is not None else "none", "strength": strength,
                    "accuracy": acc, "n": len(recordings)})  # fmt: skip
    return out


def checkpoint_probs_of(ckpt_path: str | Path) -> tuple[ProbsOf, Any]:
    """A run checkpoint as a :data:`ProbsOf` (LogMel as training ran it + the network, in torch) and its
    :class:`~vocalis.models.checkpoint.LoadedNetwork`."""
    import torch

    from vocalis.contracts.windows import WindowSpec
    from vocalis.features import LogMel
    from vocalis.models.checkpoint import load_network

    loaded = load_network(ckpt_path)
    featurizer = LogMel(loaded.features).eval()
    net = loaded.net.eval()
    spec = WindowSpec(loaded.window_s, loaded.hop_s, loaded.features.sample_rate)

    @torch.no_grad()
    def probs_of(wave: np.ndarray) -> np.ndarray:
        windows = torch.from_numpy(np.ascontiguousarray(spec.cut(wave), dtype=np.float32))
        return torch.softmax(net(featurizer(windows)), dim=-1).mean(dim=0).numpy()

    return probs_of, loaded


def evaluate_shifts(
    run_dir: str | Path,
    kind: str,
    strengths: Sequence[float] | None = None,
    *,
    checkpoint: str = "best",
    split: str = "test",
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Accuracy of a run's checkpoint on ``split`` of its cache, unshifted and under ``kind`` at each
    strength (default :data:`DEFAULT_STRENGTHS`)."""
    from vocalis.evaluation.evaluate import resolve_checkpoint

    if kind not in SHIFT_KINDS:
        raise ConfigError(f"--shift: '{kind}' is not one of {list(SHIFT_KINDS)}")
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"{run}: run directory not found")
    probs_of, loaded = checkpoint_probs_of(resolve_checkpoint(run, checkpoint))
    if not loaded.cache_dir:
        raise CacheError("checkpoint: no cache_dir recorded; cannot find the recordings it was tested on")
    recordings = split_recordings(loaded.cache_dir, split, list(loaded.classes), loaded.features.sample_rate)
    chosen = list(strengths or default_strengths(kind, loaded.features.sample_rate))
    return shift_accuracy(recordings, probs_of, kind, chosen, seed=seed)
