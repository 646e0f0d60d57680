"""One tiny but real training run, made by the project's own stages, and its exported artifacts.

Tone-like calls per class (three frequency bands, random pitch, gain and noise) are written as a
class-per-folder tree of real WAV files; the data stage prepares its feature cache (``data=folder``), the
real trainer (Lightning, the demo recipe at its smallest) trains the compact network on it and writes the
run directory (checkpoints, ``metrics.json``, ``run.json``) exactly as ``vocalis train`` does, and
:func:`vocalis.export.onnx.export_artifact` exports it. The classes are easy on purpose: a few epochs on
a loaded 2-core machine must give a model that demonstrably hears them (the synthetic generator's call
types need far longer). Tests build it once per session (the ``trained_run`` fixture in
``tests/conftest.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

CLASSES = ["alpha", "beta", "gamma"]
BANDS = {"alpha": (300.0, 700.0), "beta": (1500.0, 2500.0), "gamma": (4000.0, 6000.0)}
#: the featurizer of the tiny run: 16 kHz and 32 mels keep it fast (and prove that the card, not a
#: default, carries the parameters)
SR = 16_000
WINDOW_S = 1.0
HOP_S = 0.5
N_MELS = 32
F_MAX = 7_500.0
#: name of the run directory (the model name in the exported card)
RUN_NAME = "tiny"
CLIPS_PER_CLASS = 10


def call(label: str, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic vocalization of ``label``: a few chirped tones in the class band over noise."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    lo, hi = BANDS[label]
    x = rng.standard_normal(n) * 0.02
    for _ in range(3):
        f0 = rng.uniform(lo, hi)
        f1 = np.clip(f0 * rng.uniform(0.85, 1.15), lo, hi)
        centre, width = rng.uniform(0, seconds), rng.uniform(0.3, 0.8)
        env = np.exp(-0.5 * ((t - centre) / (width / 2)) ** 2)
        x += env * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))) * rng.uniform(0.2, 0.6)
    return (x * rng.uniform(0.3, 1.0)).astype(np.float32)


def write_calls(root: Path, clips_per_class: int = CLIPS_PER_CLASS, seed: int = 0) -> Path:
    """``root/<class>/<class>_<k>.wav``: 1.6-2.6 s calls of every class, 16-bit PCM at :data:`SR`."""
    rng = np.random.default_rng(seed)
    for label in CLASSES:
        (root / label).mkdir(parents=True, exist_ok=True)
        for k in range(clips_per_class):
            wave = call(label, float(rng.uniform(1.6, 2.6)), SR, rng)
            sf.write(root / label / f"{label}_{k}.wav", wave, SR, subtype="PCM_16")
    return root


def overrides(root: Path) -> list[str]:
    """Hydra overrides of the tiny run under ``root``: the demo recipe on the tone tree, a few epochs."""
    return [
        "experiment=demo",
        "data=folder",
        f"paths.root_dir={root}",
        f"data.root={root / 'calls'}",
        f"data.window_s={WINDOW_S}",
        f"data.hop_s={HOP_S}",
        f"data.features.sample_rate={SR}",
        "data.features.n_fft=512",
        "data.features.hop_length=160",
        f"data.features.n_mels={N_MELS}",
        f"data.features.f_max={F_MAX}",
        "data.split.val=0.2",
        "data.split.test=0.2",
        "data.prepare_workers=1",
        "data.batch_size=16",
        "optimizer.lr=0.005",
        # no augmentation, smoothing or dropout: a confident model whose int8 copy passes the 1-point gate
        "training.label_smoothing=0.0",
        "training.augment.freq_masks=0",
        "training.augment.time_masks=0",
        "model.dropout=0.0",
        "trainer.max_epochs=8",
        "callbacks=minimal",
        "logger=none",
        f"run_dir={root / 'runs' / RUN_NAME}",
    ]


def train_run(
    root: Path, clips_per_class: int = CLIPS_PER_CLASS, epochs: int | None = None, seed: int = 0
) -> Path:
    """Generate, prepare and train the tiny run under ``root`` with the real stages; return its directory.

    ``clips_per_class``, ``epochs`` and ``seed`` (of the calls and of training) vary the run: the registry
    tests make a deliberately worse candidate with one epoch, the monitoring tests a larger reference.
    """
    from vocalis.configs import compose_config
    from vocalis.training.train import prepare_data, train

    write_calls(root / "calls", clips_per_class=clips_per_class, seed=seed)
    extra = [f"seed={42 + seed}"] + ([f"trainer.max_epochs={epochs}"] if epochs is not None else [])
    cfg = compose_config(overrides(root) + extra)
    result = train(cfg, cache=prepare_data(cfg))
    assert result is not None  # a single process is rank 0
    return result.run_dir


def export_run(run_dir: Path, out: Path, quantize: str | None = None) -> Path:
    """Export ``run_dir`` to ``out`` with the project's exporter (what ``vocalis export`` calls)."""
    from vocalis.export.onnx import export_artifact

    return export_artifact(run_dir, out, quantize=quantize).directory
