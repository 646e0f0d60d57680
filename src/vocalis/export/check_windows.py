"""Real audio windows for export-time checks, read back from a run's feature cache.

The exported model takes audio, so parity checks, int8 calibration and the int8 accuracy gate need the
audio windows the cache's features were computed from: the cache manifest lists, per window, the source
recording (``path``), its split, its label and ``start_s``. The cache is read with
:class:`vocalis.contracts.cache.FeatureCache`; each recording is decoded once with :mod:`vocalis.audio` at the
model's rate and cut exactly as :class:`vocalis.contracts.windows.WindowSpec` cuts (samples from ``start_s``,
the last window zero-padded). numpy/pandas only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vocalis import audio
from vocalis.contracts.cache import FeatureCache
from vocalis.contracts.discovery import find_audio_files
from vocalis.contracts.windows import WindowSpec
from vocalis.errors import CacheError

log = logging.getLogger(__name__)


@dataclass
class AudioWindows:
    """Waveform windows ``[n, samples]`` at the model rate, class indices (-1: unknown) and origin."""

    waveforms: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.waveforms)


def cache_windows(
    cache_dir: str | Path | None,
    *,
    splits: tuple[str, ...],
    classes: list[str],
    sample_rate: int,
    window_samples: int,
    limit: int | None = None,
    seed: int = 0,
) -> AudioWindows:
    """Decode the windows of ``splits`` listed in ``cache_dir/manifest.csv`` (at most ``limit``, sampled
    with ``seed``, stratified by nothing but chance). Returns an empty set when the cache or its audio is
    not available: callers fall back to synthetic windows and say so."""
    empty = AudioWindows(np.zeros((0, window_samples), np.float32), np.zeros(0, np.int64), "none")
    if cache_dir is None:
        return empty
    try:
        cache = FeatureCache.open(cache_dir)
        manifest = cache.manifest
    except (CacheError, OSError, ValueError) as exc:
        log.info("no usable feature cache: %s", exc)
        return empty
    need = {"path", "split", "label", "start_s"}
    if not need <= set(manifest.columns):
        log.warning("%s: manifest lacks columns %s", cache.dir, sorted(need - set(manifest.columns)))
        return empty
    rows = manifest[manifest["split"].isin(splits)]
    if limit is not None and len(rows) > limit:
        rows = rows.sample(n=limit, random_state=seed)
    index = {c: i for i, c in enumerate(classes)}
    waves: list[np.ndarray] = []
    labels: list[int] = []
    for path_str, group in rows.groupby("path", sort=True):
        path = cache.audio_path(str(path_str))
        try:
            wave = audio.load(path, sample_rate)
        except audio.AudioDecodeError as exc:
            log.warning("skipping windows of %s: %s", path, exc)
            continue
        for start_s, label in zip(group["start_s"], group["label"], strict=True):
            s = round(float(start_s) * sample_rate)
            win = np.zeros(window_samples, np.float32)
            piece = wave[s : s + window_samples]
            win[: len(piece)] = piece
            waves.append(win)
            labels.append(index.get(str(label), -1))
    if not waves:
        return empty
    return AudioWindows(np.stack(waves), np.asarray(labels, np.int64), f"{cache.dir.name}:{'+'.join(splits)}")


def synthetic_windows(n: int, window_samples: int, sample_rate: int, seed: int = 0) -> AudioWindows:
    """Windows of tones, chirps, noise, silence and a near-clipping signal: a parity set when no real audio
    is at hand (every class label is -1)."""
    rng = np.random.default_rng(seed)
    t = np.arange(window_samples, dtype=np.float64) / sample_rate
    out = []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            x = np.sin(2 * np.pi * rng.uniform(100, 8000) * t)
        elif kind == 1:
            f0, f1 = rng.uniform(200, 2000), rng.uniform(2000, 12000)
            x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1] + 1e-9)))
        elif kind == 2:
            x = rng.standard_normal(window_samples) * rng.uniform(1e-3, 0.5)
        elif kind == 3:
            x = np.zeros(window_samples)
        else:
            x = np.clip(rng.standard_normal(window_samples) * 2.0, -1, 1)
        out.append((x * rng.uniform(0.05, 1.0)).astype(np.float32))
    return AudioWindows(np.stack(out), np.full(n, -1, np.int64), "synthetic")


def folder_windows(
    folder: str | Path, *, sample_rate: int, window_samples: int, limit: int = 256, seed: int = 0
) -> AudioWindows:
    """Non-overlapping windows cut from every audio file under ``folder`` (at most ``limit``, sampled with
    ``seed``); files that do not decode are skipped (logged)."""
    spec = WindowSpec(window_samples / sample_rate, window_samples / sample_rate, sample_rate)
    root = Path(folder)
    chunks = []
    for path in find_audio_files(root):
        try:
            chunks.append(spec.cut(audio.load(path, sample_rate)))
        except audio.AudioDecodeError as exc:
            log.warning("calibration: skipping %s", exc)
    if not chunks:
        return AudioWindows(np.zeros((0, window_samples), np.float32), np.zeros(0, np.int64), "none")
    waves = np.concatenate(chunks)
    if len(waves) > limit:
        waves = waves[np.sort(np.random.default_rng(seed).choice(len(waves), limit, replace=False))]
    return AudioWindows(waves, np.full(len(waves), -1, np.int64), f"folder:{root}")
