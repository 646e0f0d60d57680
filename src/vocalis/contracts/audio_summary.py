"""Summary features of a recording: logged with each served prediction, stored as the drift reference.

Cheap, model-independent descriptors of the input: if the field recordings change (new hydrophone, new
site, more noise), these move before accuracy visibly drops. Computed on the mono waveform at the model's
sample rate so that every input is described on the same frequency axis.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: frames analysed at most: a recording of any length is summarised from this many evenly spaced frames
_MAX_FRAMES = 64
_N_FFT = 2048


@dataclass(frozen=True)
class AudioSummary:
    """Level and spectral shape of a recording."""

    rms_dbfs: float
    spectral_centroid_hz: float
    spectral_bandwidth_hz: float
    peak_frequency_hz: float
    zero_crossing_rate: float

    def to_dict(self) -> dict[str, float]:
        """Plain dict (column name -> value)."""
        return asdict(self)


def summarize(waveform: np.ndarray, sample_rate: int) -> AudioSummary:
    """Describe a mono float waveform: RMS level (dBFS), spectral centroid, bandwidth, peak frequency, ZCR.

    The spectrum is the mean power spectrum of up to 64 Hann-windowed frames of 2048 samples spread evenly
    over the recording, so the cost is bounded whatever the duration.
    """
    x = np.asarray(waveform, dtype=np.float32).ravel()
    if x.size == 0:
        return AudioSummary(-200.0, 0.0, 0.0, 0.0, 0.0)
    # sum of squares in float64, a block at a time: a float64 copy of an hour at 16 kHz would be 460 MB
    block = 1 << 20
    squares = sum(
        float(np.dot(c, c)) for c in (x[i : i + block].astype(np.float64) for i in range(0, x.size, block))
    )
    rms = float(np.sqrt(squares / x.size))
    rms_dbfs = 20.0 * np.log10(max(rms, 1e-10))
    signs = np.signbit(x)
    zcr = float(np.count_nonzero(signs[1:] != signs[:-1]) / max(x.size - 1, 1))

    if x.size < _N_FFT:
        x = np.pad(x, (0, _N_FFT - x.size))
    n_frames = min(_MAX_FRAMES, 1 + (x.size - _N_FFT) // (_N_FFT // 2))
    starts = np.linspace(0, x.size - _N_FFT, n_frames).astype(np.int64)
    frames = x[starts[:, None] + np.arange(_N_FFT)[None, :]] * np.hanning(_N_FFT).astype(np.float32)
    power = np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0)
    freqs = np.fft.rfftfreq(_N_FFT, d=1.0 / sample_rate)
    total = float(power.sum())
    if total <= 0.0:  # digital silence: no spectral shape to speak of
        return AudioSummary(float(rms_dbfs), 0.0, 0.0, 0.0, zcr)
    centroid = float((freqs * power).sum() / total)
    bandwidth = float(np.sqrt(((freqs - centroid) ** 2 * power).sum() / total))
    peak = float(freqs[int(np.argmax(power))])
    return AudioSummary(float(rms_dbfs), centroid, bandwidth, peak, zcr)
