"""Generate a long field-like recording for demos and benchmarks, in bounded memory.

Background noise with calls pasted in at random times: the calls are taken from the recordings of a folder
(e.g. the synthetic data set, ``data/synthetic``) when one is given, else synthetic chirps. The file is
written block by block (16-bit PCM), so an hour at 32 kHz never sits in memory. A CSV of what was pasted
where (``OUT.truth.csv``: ``start_s,end_s,source``) is written next to it.

    vocalis data longfile OUT.wav --minutes 60 --from data/synthetic
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import soundfile as sf

from vocalis import audio
from vocalis.contracts.discovery import find_audio_files

log = logging.getLogger(__name__)


def _load_calls(folder: Path | None, sample_rate: int, limit: int = 200) -> list[tuple[str, np.ndarray]]:
    if folder is None:
        return []
    calls = []
    for path in find_audio_files(folder)[:limit]:
        try:
            wave = audio.load(path, sample_rate)
        except audio.AudioDecodeError as exc:
            log.warning("skipping %s", exc)
            continue
        peak = float(np.abs(wave).max()) or 1.0
        calls.append((str(path.relative_to(folder)), wave / peak))
    return calls


def _chirp(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    n = int(rng.uniform(0.5, 2.0) * sample_rate)
    t = np.arange(n) / sample_rate
    f0, f1 = rng.uniform(300, 3000), rng.uniform(1000, 9000)
    env = np.hanning(n)
    return (env * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1])))).astype(np.float32)


def write_long_recording(
    path: str | Path,
    seconds: float,
    *,
    sample_rate: int = 32_000,
    source_dir: str | Path | None = None,
    calls_per_minute: float = 6.0,
    block_seconds: float = 60.0,
    seed: int = 0,
) -> Path:
    """Write ``seconds`` of noise with calls to ``path`` (16-bit PCM); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    calls = _load_calls(Path(source_dir) if source_dir else None, sample_rate)
    total = int(seconds * sample_rate)
    block = int(block_seconds * sample_rate)
    truth: list[tuple[float, float, str]] = []
    with sf.SoundFile(out, "w", sample_rate, 1, subtype="PCM_16") as snd:
        for start in range(0, total, block):
            n = min(block, total - start)
            x = (rng.standard_normal(n) * 0.01).astype(np.float32)
            for _ in range(rng.poisson(calls_per_minute * n / sample_rate / 60)):
                name, call = calls[rng.integers(len(calls))] if calls else ("chirp", _chirp(rng, sample_rate))
                at = int(rng.integers(0, max(1, n - len(call))))
                piece = call[: n - at] * rng.uniform(0.2, 0.7)
                x[at : at + len(piece)] += piece
                truth.append(((start + at) / sample_rate, (start + at + len(piece)) / sample_rate, name))
            snd.write(np.clip(x, -1, 1))
    with out.with_name(out.name + ".truth.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["start_s", "end_s", "source"])
        writer.writerows((f"{a:.3f}", f"{b:.3f}", s) for a, b, s in truth)
    return out
