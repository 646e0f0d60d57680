"""Data-stage test material: tiny real audio trees and data configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

FEATURES = {
    "sample_rate": 16_000,
    "n_fft": 512,
    "hop_length": 160,
    "n_mels": 32,
    "f_min": 50.0,
    "f_max": 7_000.0,
    "top_db": 80.0,
}


def make_cfg(**over: Any) -> dict[str, Any]:
    """A small, fast data config (16 kHz, 32 mels, 1 s windows)."""
    cfg: dict[str, Any] = {
        "source": "folder",
        "name": "t",
        "window_s": 1.0,
        "hop_s": 0.5,
        "features": dict(FEATURES),
        "split": {"val": 0.2, "test": 0.2, "seed": 1},
        "prepare_workers": 1,
        "chunk_size": 4,
        "prepare_batch_size": 64,
    }
    cfg.update(over)
    return cfg


def write_clip(path: Path, seconds: float, sr: int = 16_000, freq: float = 500.0, seed: int = 0) -> Path:
    """A real audio file: a tone plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.4 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "FLAC" if path.suffix == ".flac" else "WAV"
    sf.write(path, x.astype(np.float32), sr, subtype="PCM_16", format=fmt)
    return path


def write_tree(root: Path, classes: int = 3, per_class: int = 6, bad: bool = True) -> Path:
    """``root/<class>/<file>``: mixed rates, formats and lengths, plus (if ``bad``) two broken files."""
    rates = [8_000, 16_000, 22_050, 44_100]
    for c in range(classes):
        for i in range(per_class):
            ext = "flac" if i % 3 == 0 else "wav"
            write_clip(
                root / f"class{c}" / f"c{c}_{i:02d}.{ext}",
                seconds=0.6 + 0.5 * i,
                sr=rates[i % len(rates)],
                freq=300.0 * (c + 1),
                seed=c * 100 + i,
            )
    if bad:
        (root / "class0" / "broken.wav").write_text("not audio at all")
        (root / "class1" / "empty.wav").write_bytes(b"")
    (root / "README.txt").write_text("ignored: not an audio file")
    return root
