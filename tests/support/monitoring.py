"""Helpers of the monitoring tests: in-distribution and shifted recordings, served by the real app."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import soundfile as sf

from support.runs import CLASSES, SR, call

__all__ = ["CLASSES", "SHIFTS", "SR", "add_noise_db", "fresh_clips", "lowpass", "post_all"]


def fresh_clips(n: int, seed: int) -> list[np.ndarray]:
    """``n`` new recordings from the generator the run was trained on (classes in turn): in-distribution."""
    rng = np.random.default_rng(seed)
    return [call(CLASSES[i % len(CLASSES)], float(rng.uniform(1.6, 2.6)), SR, rng) for i in range(n)]


def add_noise_db(x: np.ndarray, db: float = 20.0, seed: int = 0) -> np.ndarray:
    """Broadband white noise ``db`` dB above the recording's own power (+20 dB: noise 100x the signal)."""
    rng = np.random.default_rng(seed)
    power = float(np.mean(x.astype(np.float64) ** 2))
    noise = rng.standard_normal(x.size) * np.sqrt(power * 10 ** (db / 10))
    y = x + noise
    return (y / max(1.0, float(np.abs(y).max()))).astype(np.float32)  # no clipping in the WAV


def lowpass(x: np.ndarray, cutoff_hz: float = 4000.0) -> np.ndarray:
    """An 8th-order Butterworth low-pass (zero phase), as a band-limited recorder would."""
    from scipy.signal import butter, sosfiltfilt

    sos = butter(8, cutoff_hz, btype="low", fs=SR, output="sos")
    return sosfiltfilt(sos, x).astype(np.float32)


SHIFTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "noise+20dB": add_noise_db,
    "lowpass4k": lowpass,
}


def wav_bytes(x: np.ndarray) -> bytes:
    """A 16-bit WAV of a waveform at the test rate."""
    buf = io.BytesIO()
    sf.write(buf, x, SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def post_all(client: object, clips: list[np.ndarray], prefix: str) -> None:
    """POST every clip to /v1/predict of a running app (TestClient or httpx.Client); assert each is served."""
    for i, x in enumerate(clips):
        r = client.post(  # type: ignore[attr-defined]
            "/v1/predict", files={"file": (f"{prefix}-{i}.wav", wav_bytes(x), "audio/wav")}
        )
        assert r.status_code == 200, r.text
