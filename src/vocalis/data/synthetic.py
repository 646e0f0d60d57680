"""A deterministic generator of marine-mammal-like calls: the embedded dataset that runs offline anywhere.

Each class is a *kind* of call, not a fixed template: pitch, duration, repetition rate, sample rate, gain,
signal-to-noise ratio (0 to 20 dB) and the background all vary per clip, and half the clips carry a
distractor sound (ship hum, snapping-shrimp crackle or a tonal blip) that belongs to no class. A model has
to learn the shape of each call in time and frequency; no single pixel gives the label away.

Every clip draws from its own random generator seeded by ``(seed, class index, clip index)``, so the same
seed gives byte-identical files (16-bit PCM WAV and FLAC, which carry no timestamps), and asking for more
clips per class leaves the existing ones unchanged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from vocalis.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

#: Sample rates the generator writes at (the featurizer resamples everything to its own rate).
SAMPLE_RATES = (16_000, 22_050, 32_000, 44_100, 48_000)
#: Written next to the clips; a tree whose ``synth.json`` matches the request is not generated again.
SPEC_FILE = "synth.json"
GENERATOR_VERSION = 2

_Event = Callable[[np.random.Generator, int], np.ndarray]


def _tone(freq: np.ndarray, sr: int) -> np.ndarray:
    """A sinusoid following an instantaneous-frequency track (Hz per sample)."""
    return np.sin(2 * np.pi * np.cumsum(freq) / sr)


def _fast_len(n: int) -> int:
    """A power of two >= n: FFT noise shaping at arbitrary (often prime-rich) lengths is very slow."""
    return 1 << max(0, n - 1).bit_length()


def _envelope(n: int, attack: float = 0.1) -> np.ndarray:
    """A smooth rise-and-fall envelope over ``n`` samples (raised-cosine edges)."""
    edge = max(1, int(n * attack))
    env = np.ones(n)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, edge))
    env[:edge] = ramp
    env[n - edge :] = ramp[::-1]
    return env


def _sweep(rng: np.random.Generator, sr: int, up: bool) -> np.ndarray:
    n = int(rng.uniform(0.3, 0.8) * sr)
    lo = rng.uniform(2500, 5000)
    hi = lo * rng.uniform(1.3, 1.7)
    curve = np.linspace(0, 1, n) ** rng.uniform(0.7, 1.5)
    freq = lo + (hi - lo) * curve if up else hi - (hi - lo) * curve
    sig = _tone(freq, sr) + 0.25 * _tone(np.minimum(2 * freq, 0.45 * sr), sr)
    return sig * _envelope(n)


def _upsweep(rng: np.random.Generator, sr: int) -> np.ndarray:
    return _sweep(rng, sr, up=True)


def _downsweep(rng: np.random.Generator, sr: int) -> np.ndarray:
    return _sweep(rng, sr, up=False)


def _moan(rng: np.random.Generator, sr: int) -> np.ndarray:
    n = int(rng.uniform(0.6, 1.2) * sr)
    f0 = rng.uniform(120, 400) * (1 + 0.08 * np.sin(np.linspace(0, rng.uniform(1, 3), n)))
    decay = rng.uniform(0.4, 0.8)
    sig = sum(decay ** (h - 1) * _tone(h * f0, sr) for h in range(1, 6))
    return np.asarray(sig) * _envelope(n, 0.2)


def _click(sr: int, freq: float) -> np.ndarray:
    """One echolocation-like click: a damped high-frequency oscillation about a millisecond long."""
    n = max(4, int(0.0015 * sr))
    t = np.arange(n) / sr
    return np.sin(2 * np.pi * freq * t) * np.exp(-t / 0.0003)


def _click_train(rng: np.random.Generator, sr: int) -> np.ndarray:
    n = int(rng.uniform(0.3, 0.8) * sr)
    ici = rng.uniform(0.012, 0.04)  # inter-click interval
    out = np.zeros(n)
    for start in np.arange(0, n - 0.002 * sr, ici * sr).astype(int):
        c = _click(sr, rng.uniform(4000, 7000))
        out[start : start + len(c)] += c[: n - start]
    return out


def _burst_pulse(rng: np.random.Generator, sr: int) -> np.ndarray:
    n = int(rng.uniform(0.2, 0.5) * sr)
    ici = rng.uniform(0.0015, 0.004)  # so fast the clicks fuse into a buzz
    out = np.zeros(n)
    for start in np.arange(0, n - 0.002 * sr, ici * sr).astype(int):
        c = _click(sr, rng.uniform(2500, 4500))
        out[start : start + len(c)] += c[: n - start]
    return out * _envelope(n, 0.2)


def _knock(rng: np.random.Generator, sr: int) -> np.ndarray:
    knocks = int(rng.integers(1, 4))
    gap = int(rng.uniform(0.1, 0.2) * sr)
    m = int(0.06 * sr)
    out = np.zeros(gap * (knocks - 1) + m)
    t = np.arange(m) / sr
    for k in range(knocks):
        body = np.sin(2 * np.pi * rng.uniform(150, 600) * t) * np.exp(-t / rng.uniform(0.008, 0.02))
        thud = rng.standard_normal(m) * np.exp(-t / 0.003) * 0.7
        out[k * gap : k * gap + m] += body + thud
    return out


def _fm_whistle(rng: np.random.Generator, sr: int) -> np.ndarray:
    n = int(rng.uniform(0.5, 1.0) * sr)
    t = np.arange(n) / sr
    freq = rng.uniform(2000, 4500) + rng.uniform(300, 700) * np.sin(2 * np.pi * rng.uniform(4, 9) * t)
    return _tone(freq, sr) * _envelope(n)


def _grunt(rng: np.random.Generator, sr: int) -> np.ndarray:
    n = int(rng.uniform(0.3, 0.7) * sr)
    t = np.arange(n) / sr
    # band-limited noise (300-1000 Hz) gated at a pulse rate of 10-20 Hz
    m = _fast_len(n)
    spec = np.fft.rfft(rng.standard_normal(m))
    f = np.fft.rfftfreq(m, 1 / sr)
    lo = rng.uniform(250, 400)
    spec[(f < lo) | (f > lo + rng.uniform(500, 800))] = 0
    band = np.fft.irfft(spec, m)[:n]
    gate = np.clip(np.sin(2 * np.pi * rng.uniform(10, 20) * t), 0, None) ** 2
    return band / (np.abs(band).max() + 1e-9) * gate * _envelope(n, 0.1)


#: The call types, in class-index order. ``--classes N`` takes the first N.
CALL_TYPES: dict[str, _Event] = {
    "upsweep_whistle": _upsweep,
    "downsweep_whistle": _downsweep,
    "tonal_moan": _moan,
    "click_train": _click_train,
    "burst_pulse": _burst_pulse,
    "broadband_knock": _knock,
    "fm_whistle": _fm_whistle,
    "pulsed_grunt": _grunt,
}


def _background(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Ocean-like noise: a random mix of white and 1/f-coloured noise, unit RMS."""
    white = rng.standard_normal(n)
    m = _fast_len(n)
    spec = np.fft.rfft(rng.standard_normal(m))
    f = np.fft.rfftfreq(m, 1 / sr)
    spec /= np.maximum(f, 20.0) ** rng.uniform(0.3, 1.0)
    coloured = np.fft.irfft(spec, m)[:n]
    coloured /= coloured.std() + 1e-12
    mix = rng.uniform(0.2, 0.8)
    noise = mix * white + (1 - mix) * coloured
    return noise / (noise.std() + 1e-12)


def _distractor(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """A sound that belongs to no class, at a random place, unit-ish peak."""
    kind = int(rng.integers(3))
    t = np.arange(n) / sr
    if kind == 0:  # ship hum: low harmonics, the whole clip
        f0 = rng.uniform(30, 90)
        hum = sum(np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 6.3)) / h for h in range(1, 5))
        return np.asarray(hum) / 2
    out = np.zeros(n)
    if kind == 1:  # snapping shrimp: sparse random crackle
        for pos in rng.integers(0, max(1, n - 8), size=int(rng.uniform(20, 80) * n / sr)):
            out[pos : pos + 3] += rng.uniform(-1, 1, size=len(out[pos : pos + 3]))
        return out
    m = min(n, int(rng.uniform(0.05, 0.2) * sr))  # a short tonal blip
    start = int(rng.integers(0, max(1, n - m)))
    out[start : start + m] = np.sin(2 * np.pi * rng.uniform(800, 6000) * t[:m]) * _envelope(m)
    return out


def synth_clip(call_type: str, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """One clip of ``call_type``: calls repeated through 1-5 s of noise. Returns float32 audio and rate."""
    event = CALL_TYPES[call_type]
    sr = int(rng.choice(SAMPLE_RATES))
    n = int(rng.uniform(1.0, 5.0) * sr)
    signal = np.zeros(n)
    # calls recur through the whole clip, so that every analysis window of it holds at least one
    pos = int(rng.uniform(0.0, 0.4) * sr)
    while pos < n:
        ev = event(rng, sr) * rng.uniform(0.6, 1.0)
        end = min(n, pos + len(ev))
        signal[pos:end] += ev[: end - pos]
        pos = end + int(rng.uniform(0.3, 1.0) * sr)
    active = np.abs(signal) > 1e-6
    sig_power = float(np.mean(signal[active] ** 2)) if active.any() else 1.0
    snr_db = rng.uniform(0.0, 20.0)
    noise = _background(rng, n, sr) * np.sqrt(sig_power / 10 ** (snr_db / 10))
    x = signal + noise
    if rng.random() < 0.5:
        x += _distractor(rng, n, sr) * np.sqrt(sig_power) * rng.uniform(0.3, 1.0)
    x *= rng.uniform(0.3, 0.9) / (np.abs(x).max() + 1e-12)
    return x.astype(np.float32), sr


@dataclass(frozen=True)
class SynthSpec:
    """What to generate. Stored as ``synth.json`` in the output tree."""

    classes: int = 8
    per_class: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.classes <= len(CALL_TYPES):
            raise ConfigError(f"synth.classes must be between 2 and {len(CALL_TYPES)}, got {self.classes}")
        if self.per_class < 1:
            raise ConfigError(f"synth.per_class must be at least 1, got {self.per_class}")

    @property
    def labels(self) -> list[str]:
        """The class names, in class-index order."""
        return list(CALL_TYPES)[: self.classes]


def iter_clips(spec: SynthSpec) -> Iterator[tuple[str, str, np.ndarray, int]]:
    """Yield ``(label, file name, audio, sample_rate)`` for every clip of the spec, deterministically."""
    for ci, label in enumerate(spec.labels):
        for i in range(spec.per_class):
            rng = np.random.default_rng([spec.seed, ci, i])
            audio, sr = synth_clip(label, rng)
            ext = "flac" if rng.random() < 0.3 else "wav"
            yield label, f"{label}_{i:03d}.{ext}", audio, sr


def generate(out_dir: str | Path, spec: SynthSpec | None = None, *, force: bool = False) -> Path:
    """Write the synthetic dataset as a class-per-folder tree of WAV and FLAC files.

    A tree that already holds a ``synth.json`` equal to ``spec`` is left as it is (unless ``force``).
    Returns the output directory.
    """
    spec = spec or SynthSpec()
    out = Path(out_dir)
    marker = out / SPEC_FILE
    wanted = {**asdict(spec), "version": GENERATOR_VERSION}
    if not force and marker.exists():
        try:
            found = json.loads(marker.read_text())
        except (OSError, ValueError):
            found = None
        if found == wanted:
            log.info("synthetic data in %s is current", out)
            return out
        if isinstance(found, dict):
            # a tree made with other sizes may be data someone trained on: never rewrite it unasked
            changed = ", ".join(f"{k} {found.get(k)} -> {v}" for k, v in wanted.items() if found.get(k) != v)
            raise DatasetError(
                f"{out}: holds synthetic data made with other settings ({changed}); refusing to "
                "regenerate it: choose another data.root, or regenerate with `vocalis data synth --force`"
            )
    if not force and out.is_dir() and not marker.exists() and any(out.iterdir()):
        raise DatasetError(
            f"{out}: not empty and not a synthetic dataset (no {SPEC_FILE}); refusing to write synthetic "
            "clips into it: choose an empty or new data.root"
        )
    out.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)  # written last: a half-written tree is never taken as complete
    for label, fname, audio, sr in iter_clips(spec):
        (out / label).mkdir(exist_ok=True)
        fmt = "FLAC" if fname.endswith(".flac") else "WAV"
        sf.write(out / label / fname, audio, sr, subtype="PCM_16", format=fmt)
    marker.write_text(json.dumps(wanted, indent=2) + "\n")
    log.info("wrote %d synthetic clips to %s", spec.classes * spec.per_class, out)
    return out
