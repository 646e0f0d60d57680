"""The drift summary of a recording read block by block: what
:func:`vocalis.contracts.audio_summary.summarize` gives on the whole waveform, in bounded memory.

A long upload is scored from disk in blocks (:meth:`vocalis.inference.Predictor.predict_stream`) and never
exists as one waveform; its summary is computed here from the same decoded blocks, keeping only running
sums and the (at most 64) spectral frames that :func:`summarize` would take.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from vocalis import audio
from vocalis.contracts.audio_summary import _MAX_FRAMES, _N_FFT, AudioSummary, summarize


def summarize_blocks(blocks: Iterable[np.ndarray], expected: int, sample_rate: int) -> AudioSummary:
    """:func:`summarize` of the concatenated ``blocks``, holding one block at a time.

    ``expected`` is the number of samples the blocks will add up to (the frames are placed from it, as
    :func:`summarize` places them from the waveform's length). RMS and zero-crossing rate are exact; when
    the blocks turn out shorter or longer than expected, the frames sit a few samples off and frames past
    the end are zero-padded, which moves the spectral figures by far less than a drift test notices.
    """
    n = max(int(expected), _N_FFT)
    n_frames = min(_MAX_FRAMES, 1 + (n - _N_FFT) // (_N_FFT // 2))
    starts = np.linspace(0, n - _N_FFT, n_frames).astype(np.int64)
    frames = np.zeros((n_frames, _N_FFT), dtype=np.float32)
    squares, crossings, seen = 0.0, 0, 0
    last_sign: bool | None = None
    tail, tail_start = np.zeros(0, dtype=np.float32), 0  # the samples [tail_start, seen) kept for frames
    k = 0  # the next frame to fill
    for block in blocks:
        b = np.asarray(block, dtype=np.float32).ravel()
        if b.size == 0:
            continue
        squares += float(np.square(b, dtype=np.float64).sum())
        signs = np.signbit(b)
        crossings += int(np.count_nonzero(signs[1:] != signs[:-1]))
        if last_sign is not None and bool(signs[0]) != last_sign:
            crossings += 1
        last_sign = bool(signs[-1])
        buf = np.concatenate([tail, b]) if tail.size else b
        seen += b.size
        while k < n_frames and starts[k] + _N_FFT <= seen:
            off = int(starts[k]) - tail_start
            frames[k] = buf[off : off + _N_FFT]
            k += 1
        keep = min(buf.size, _N_FFT - 1)  # a frame not filled yet starts after seen - _N_FFT
        tail, tail_start = buf[buf.size - keep :].copy(), seen - keep
    if seen == 0:
        return summarize(np.zeros(0, dtype=np.float32), sample_rate)
    for j in range(k, n_frames):  # the audio ended before these frames did: zero-padded, as summarize pads
        off = max(0, int(starts[j]) - tail_start)
        piece = tail[off : off + _N_FFT]
        frames[j, : piece.size] = piece
    rms = float(np.sqrt(squares / seen))
    rms_dbfs = 20.0 * np.log10(max(rms, 1e-10))
    zcr = float(crossings / max(seen - 1, 1))
    # the spectral part exactly as summarize computes it
    power = np.mean(np.abs(np.fft.rfft(frames * np.hanning(_N_FFT).astype(np.float32), axis=1)) ** 2, axis=0)
    freqs = np.fft.rfftfreq(_N_FFT, d=1.0 / sample_rate)
    total = float(power.sum())
    if total <= 0.0:
        return AudioSummary(float(rms_dbfs), 0.0, 0.0, 0.0, zcr)
    centroid = float((freqs * power).sum() / total)
    bandwidth = float(np.sqrt(((freqs - centroid) ** 2 * power).sum() / total))
    peak = float(freqs[int(np.argmax(power))])
    return AudioSummary(float(rms_dbfs), centroid, bandwidth, peak, zcr)


def summarize_file(
    path: Path, sample_rate: int, info: audio.AudioInfo, *, name: str, block_s: float
) -> AudioSummary:
    """The summary of a recording on disk at ``sample_rate``, decoded ``block_s`` seconds at a time."""
    expected = round(info.frames * sample_rate / info.sample_rate)
    blocks = audio.stream(path, sample_rate, block_seconds=block_s, name=name)
    return summarize_blocks(blocks, expected, sample_rate)
