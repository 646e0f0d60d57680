"""Prediction split into jobs: plan (file -> whole-file or per-segment jobs), decode a job, assemble a file.

Shared by the pipelined local engine (:mod:`vocalis.inference.engine`) and the Ray engine
(:mod:`vocalis.inference.ray_engine`), so the two cut the same samples into the same windows and give the
same detections.

- **Plan.** A file up to ``segment_s`` seconds is one job; a longer one is split into segments of whole
  windows (``segment_s`` of window starts each), so a long recording is decoded by several workers at once and
  no worker holds more than a segment.
- **Decode** (:func:`decode_job`, a plain function: it runs in a worker process or a Ray task). A
  whole-file job reads the file with :func:`vocalis.audio.stream` in blocks of ``block_s`` and concatenates
  them: the samples :meth:`Predictor.predict_stream` sees. A segment job seeks to its first window (less a
  margin at the file's rate when the file must be resampled, so the resampler has settled before the first
  kept sample) and reads to its last window's end; at the model's rate its samples are exactly the whole
  file's, resampled ones agree to resampler precision (the docs of :mod:`vocalis.inference.predictor` give
  the tolerance).
- **Assemble** (:func:`assemble`): the probabilities of a file's jobs, in order, become one
  :class:`FilePrediction` with the top labels and summary :class:`Predictor` gives.

A job's result holds the mono waveform at the model's rate, not the windows: windows overlap (by half at the
usual hop), so sending the waveform moves half the bytes; :func:`cut_windows` cuts them where the model runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vocalis import audio
from vocalis.contracts.windows import WindowSpec, require_featurizable
from vocalis.errors import AudioDecodeError, VocalisError
from vocalis.inference.predictor import FilePrediction, FileSummary, WindowPrediction

#: files longer than this (seconds) are split into segments of this many seconds of window starts
SEGMENT_S = 300.0
#: seconds of audio read before a resampled segment's first sample (soxr HQ settles in a few milliseconds)
_MARGIN_S = 0.5


@dataclass(frozen=True)
class Job:
    """One unit of decoding work: a whole file (``n_segments == 1``) or one segment of a long one."""

    index: int  # position in the run (results are put back in this order)
    file_index: int
    path: str  # a local path or an object-store URI (s3://, gs://)
    segment: int = 0
    n_segments: int = 1
    sample_rate: int = 0  # the model's rate
    window_s: float = 0.0
    hop_s: float = 0.0
    segment_windows: int = 0  # windows per segment (segment jobs only)
    block_s: float = 60.0

    @property
    def spec(self) -> WindowSpec:
        """The windows this job cuts."""
        return WindowSpec(self.window_s, self.hop_s, self.sample_rate)


@dataclass
class Decoded:
    """What a worker sends back for a job: the waveform to cut (or the reason the file failed)."""

    job: Job
    wave: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    offset: int = 0  # model-rate sample index of wave[0]
    first_window: int = 0
    n_windows: int = 0
    total: int = -1  # samples in the whole file at the model's rate, when this job saw the end
    sample_rate: int = 0  # the file's own rate
    channels: int = 0
    duration_s: float = 0.0  # from the header
    error: str | None = None


def plan_jobs(
    files: list[str],
    durations: list[float],
    spec: WindowSpec,
    *,
    block_s: float = 60.0,
    segment_s: float = SEGMENT_S,
) -> list[Job]:
    """Jobs for ``files`` (with their header durations; 0 when unknown: one whole-file job)."""
    jobs: list[Job] = []
    seg_windows = max(1, round(segment_s / spec.hop_s))
    for i, (path, dur) in enumerate(zip(files, durations, strict=True)):
        remote = "://" in path
        n_samples = math.ceil(dur * spec.sample_rate)
        n_windows = spec.count(n_samples) if n_samples else 1
        n_seg = 1 if remote or dur <= segment_s else math.ceil(n_windows / seg_windows)
        common = dict(
            file_index=i,
            path=path,
            n_segments=n_seg,
            sample_rate=spec.sample_rate,
            window_s=spec.window_s,
            hop_s=spec.hop_s,
            segment_windows=seg_windows if n_seg > 1 else 0,
            block_s=block_s,
        )
        for k in range(n_seg):
            jobs.append(Job(index=len(jobs), segment=k, **common))  # type: ignore[arg-type]
    return jobs


def read_source(path: str) -> str | bytes:
    """A local path as is; an object-store URI (``s3://``, ``gs://``, ...) read into memory with pyarrow."""
    if "://" not in path or path.startswith("file://"):
        return path.removeprefix("file://")
    from pyarrow import fs as pafs

    try:
        filesystem, inner = pafs.FileSystem.from_uri(path)
        with filesystem.open_input_stream(inner) as fh:
            return bytes(fh.read())
    except (OSError, ValueError) as exc:
        raise AudioDecodeError(path, f"cannot read from the object store ({exc})") from None


def decode_job(job: Job) -> Decoded:
    """Decode one job (never raises for a bad file: the reason goes into :attr:`Decoded.error`)."""
    try:
        if job.n_segments == 1:
            return _decode_whole(job)
        return _decode_segment(job)
    except VocalisError as exc:
        return Decoded(job, error=getattr(exc, "reason", str(exc)))
    except (OSError, RuntimeError, ValueError) as exc:  # libsndfile/soxr surprises: name the file, go on
        return Decoded(job, error=f"decoding failed ({exc})")


def _decode_whole(job: Job) -> Decoded:
    source = read_source(job.path)
    hdr = audio.info(source, name=job.path)
    blocks = list(audio.stream(source, job.sample_rate, block_seconds=job.block_s, name=job.path))
    wave = blocks[0] if len(blocks) == 1 else np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    require_featurizable(len(wave), job.path, job.sample_rate)
    n = job.spec.count(len(wave))
    return Decoded(job, wave, 0, 0, n, len(wave), hdr.sample_rate, hdr.channels, hdr.duration)


def _decode_segment(job: Job) -> Decoded:
    import soundfile as sf

    spec, msr = job.spec, job.sample_rate
    w, h = spec.window_samples, spec.hop_samples
    first = job.segment * job.segment_windows
    last = first + job.segment_windows  # exclusive
    a = first * h  # model-rate samples this job needs: [a, b)
    b = (last - 1) * h + w
    hdr = audio.info(job.path, name=job.path)
    sr = hdr.sample_rate
    if sr == msr:
        f0, lead = a, 0
    else:
        # start on a frame that maps to a whole model sample, a margin early, so the samples kept line up
        step = sr // math.gcd(sr, msr)
        f0 = max(0, (int(a * sr / msr) - int(_MARGIN_S * sr)) // step * step)
        lead = a - f0 * msr // sr  # model samples to drop at the front
    f1 = math.ceil(b * sr / msr) + (int(_MARGIN_S * sr) if sr != msr else 0)
    try:
        with sf.SoundFile(job.path) as snd:
            snd.seek(min(f0, snd.frames))
            x = snd.read(max(0, f1 - f0), dtype="float32", always_2d=True)
            at_end = f0 + x.shape[0] >= snd.frames or x.shape[0] < f1 - f0
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioDecodeError(job.path, f"decoding failed ({exc})") from None
    if x.shape[0] and not np.isfinite(x).all():
        raise AudioDecodeError(job.path, "has NaN/infinite samples")
    mono = audio.to_mono(x) if x.shape[0] else np.zeros(0, np.float32)
    wave = audio.resample(mono, sr, msr)[lead:] if len(mono) else mono
    if not at_end:
        wave = wave[: b - a]
    total = -1
    if at_end and len(wave) == 0 and job.segment > 0:  # the file ended before this segment: nothing here
        return Decoded(job, wave, a, first, 0, -1, sr, hdr.channels, hdr.duration)
    if at_end:  # this job saw the end of the file: it knows the file's length at the model's rate
        total = a + len(wave)
        if total <= 0:
            raise AudioDecodeError(job.path, "contains no audio samples")
        last = min(last, spec.count(total))
    n = max(0, last - first)
    return Decoded(job, wave, a, first, n, total, sr, hdr.channels, hdr.duration)


def cut_windows(d: Decoded, spec: WindowSpec) -> np.ndarray:
    """The job's windows ``[n_windows, window_samples]`` (zero-padded past the end of the audio)."""
    return cut(d.wave, d.offset, d.first_window, d.n_windows, spec)


def cut(wave: np.ndarray, offset: int, first_window: int, n_windows: int, spec: WindowSpec) -> np.ndarray:
    """Windows ``first_window ..`` of a recording from ``wave`` (its samples from ``offset`` on), as a
    read-only view ``[n_windows, window_samples]`` of one zero-padded copy of their samples: windows that
    overlap share their samples (a 5-minute segment at hop 1.5 s is 38 MB of samples, 77 MB of windows)."""
    w, h = spec.window_samples, spec.hop_samples
    if n_windows == 0:
        return np.zeros((0, w), np.float32)
    lo = first_window * h - offset
    hi = lo + (n_windows - 1) * h + w
    piece = np.zeros(hi - lo, dtype=np.float32)
    have = wave[lo:hi]
    piece[: len(have)] = have
    return np.lib.stride_tricks.sliding_window_view(piece, w)[::h]


@dataclass
class JobResult:
    """A decoded job's window probabilities, with what :func:`assemble` needs of the decoding."""

    job: Job
    probs: np.ndarray
    first_window: int
    total: int
    sample_rate: int
    channels: int
    duration_s: float
    error: str | None = None

    @classmethod
    def of(cls, d: Decoded, probs: np.ndarray) -> JobResult:
        """The result of a decoded job whose windows gave ``probs``."""
        return cls(d.job, probs, d.first_window, d.total, d.sample_rate, d.channels, d.duration_s, d.error)

    def to_row(self) -> dict[str, Any]:
        """A flat dict (what a Ray Data row holds)."""
        return {
            "index": self.job.index,
            "probs": self.probs,
            "first_window": self.first_window,
            "total": self.total,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "duration_s": self.duration_s,
            "error": self.error or "",
        }


def assemble(
    parts: list[JobResult], classes: list[str], spec: WindowSpec, top_k: int, min_conf: float
) -> FilePrediction:
    """One file's prediction from its jobs' results (in segment order); the same windows, top labels and
    summary as :meth:`Predictor.predict_stream` gives."""
    probs = np.concatenate([p.probs for p in parts]) if parts else np.zeros((0, len(classes)), np.float32)
    total = max(p.total for p in parts)
    sr = spec.sample_rate
    starts = np.arange(len(probs), dtype=np.int64) * spec.hop_samples
    ends = spec.ends(starts, total)
    k = max(1, min(int(top_k), len(classes)))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    windows = [
        WindowPrediction(s / sr, e / sr, [(classes[j], float(p[j])) for j in idx if p[j] >= min_conf], p)
        for p, idx, s, e in zip(probs, order, starts.tolist(), ends.tolist(), strict=True)
    ]
    mx, mean = probs.max(axis=0), probs.mean(axis=0)
    best = int(np.argmax(mx))
    summary = FileSummary(
        top_label=classes[best],
        top_confidence=float(mx[best]),
        max_probs={c: float(v) for c, v in zip(classes, mx, strict=True)},
        mean_probs={c: float(v) for c, v in zip(classes, mean, strict=True)},
    )
    head = parts[0]
    # a truncated file holds less than its header says: report what was decoded (as predict_stream does)
    decoded = total / sr
    duration = head.duration_s if abs(head.duration_s - decoded) <= 2 / sr else decoded
    return FilePrediction(
        file=head.job.path,
        duration_s=duration,
        sample_rate=head.sample_rate,
        channels=head.channels,
        windows=windows,
        summary=summary,
        window_s=spec.window_s,
        hop_s=spec.hop_s,
        classes=list(classes),
    )


class FileAssembler:
    """Collects job results (in job order) and hands back each file's outcome once all its jobs are in."""

    def __init__(self, classes: list[str], spec: WindowSpec, top_k: int, min_conf: float) -> None:
        self.classes, self.spec, self.top_k, self.min_conf = classes, spec, top_k, min_conf
        self._parts: list[JobResult] = []

    def add(self, r: JobResult) -> tuple[str, FilePrediction | str] | None:
        """Add the next job's result; ``(path, prediction or error reason)`` when its file is complete."""
        self._parts.append(r)
        if r.job.segment + 1 < r.job.n_segments:
            return None
        parts, self._parts = self._parts, []
        errors = [p.error for p in parts if p.error]
        if errors:
            return r.job.path, errors[0]
        return r.job.path, assemble(parts, self.classes, self.spec, self.top_k, self.min_conf)


def header_duration(path: str) -> float:
    """A local file's duration from its header (0 for an object-store URI: read when decoded)."""
    if "://" in path:
        return 0.0
    return audio.info(Path(path), name=path).duration


__all__ = [
    "Decoded",
    "FileAssembler",
    "Job",
    "JobResult",
    "assemble",
    "cut",
    "cut_windows",
    "decode_job",
    "header_duration",
    "plan_jobs",
]
