"""An uploaded recording, decoded once: header checks, the short-audio rule, and keeping the raw upload.

The bytes are opened once (:func:`vocalis.audio.load_with_info`): the header is checked (duration limit,
empty audio) before a sample is decoded, then the samples are decoded, downmixed and resampled to the
model's rate. The waveform goes to the Predictor and to the drift summary; the header facts (the file's own
sample rate and channels, the decoded duration) go into the response and the log.
"""

from __future__ import annotations

import contextlib
import math
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np

from vocalis import audio
from vocalis.contracts.windows import WindowSpec, require_featurizable
from vocalis.errors import AudioTooShortError
from vocalis.serving.api_errors import ApiError
from vocalis.serving.settings import Settings

#: an upload up to this size is read into memory (Starlette keeps a part of up to 1 MB in memory and spools
#: a larger one to a temporary file, which is then scored from disk)
IN_MEMORY_UPLOAD_BYTES = 1024 * 1024


class LongerThanBlock(Exception):
    """Raised by :func:`decode_upload` (given ``stream_above_s``) on the header of a recording longer than
    that: it is to be scored block by block from a file, not decoded whole."""

    def __init__(self, info: audio.AudioInfo) -> None:
        super().__init__(f"{info.duration:.1f} s")
        self.info = info


@dataclass(frozen=True)
class DecodedUpload:
    """A mono float32 waveform at the model's rate and what the file's header (and decoding) said."""

    waveform: np.ndarray
    info: audio.AudioInfo


def check_featurizable(info: audio.AudioInfo, name: str) -> None:
    """The service side of the one short-audio rule (:func:`vocalis.contracts.windows.require_featurizable`):
    refuse only audio that cannot be featurized at all (400 ``empty_audio``).

    Any other length is accepted: a clip shorter than the model's window is zero-padded to one window,
    exactly as data preparation and ``vocalis predict`` pad short clips, so a real 33 ms click is
    classified, not refused.
    """
    try:
        require_featurizable(info.frames, name, info.sample_rate)
    except AudioTooShortError as exc:
        raise ApiError(400, "empty_audio", str(exc)) from None


def _pad_to_one_sample(waveform: np.ndarray) -> np.ndarray:
    # resampling a clip of a few samples can round to zero samples at the model's rate (1 sample at
    # 44.1 kHz -> 0 at 16 kHz); the clip had audio, so it becomes one (silent) sample that the window pads
    return waveform if waveform.size else np.zeros(1, dtype=np.float32)


def check_window_count(info: audio.AudioInfo, name: str, spec: WindowSpec, max_windows: int) -> None:
    """Refuse (413 ``too_many_windows``) a file whose duration / hop asks for more than ``max_windows``.

    Checked on the header, before a sample is decoded, so the refusal costs no memory.
    """
    samples = math.ceil(info.duration * spec.sample_rate)
    count = spec.count(samples)
    if count > max_windows:
        raise ApiError(
            413,
            "too_many_windows",
            f"{name}: {info.duration:.1f} s with a hop of {spec.hop_s:g} s is {count} windows; the limit "
            f"is {max_windows} (VOCALIS_MAX_WINDOWS): use a larger hop or a shorter recording",
        )


def check_header(info: audio.AudioInfo, name: str, settings: Settings, spec: WindowSpec | None) -> None:
    """The checks every upload's header passes before a sample is decoded (raises :class:`ApiError`):
    the duration limit, the short-audio rule and, with ``spec``, the window count."""
    if info.duration > settings.max_duration_s:
        raise ApiError(
            413,
            "audio_too_long",
            f"{name}: {info.duration:.1f} s of audio is longer than the limit of "
            f"{settings.max_duration_s:.0f} s",
        )
    check_featurizable(info, name)
    if spec is not None:
        check_window_count(info, name, spec, settings.max_windows)


def decode_error(exc: audio.AudioDecodeError) -> ApiError:
    """The API error for a decoding failure: libsndfile cannot open it at all, not an audio file (415);
    it opens but its samples are bad (400)."""
    if "not a readable audio" in exc.reason:
        return ApiError(415, "unsupported_media", str(exc))
    return ApiError(400, "invalid_audio", str(exc))


def decode_upload(
    data: bytes,
    name: str,
    sample_rate: int,
    settings: Settings,
    spec: WindowSpec | None = None,
    *,
    stream_above_s: float | None = None,
) -> DecodedUpload:
    """Check and decode an upload to mono at ``sample_rate``, opening the bytes once (raises ApiError).

    With ``spec``, the number of windows it would cut is checked against ``settings.max_windows`` first.
    With ``stream_above_s``, a recording longer than that raises :class:`LongerThanBlock` on its header,
    before a sample is decoded.
    """
    if not data:
        raise ApiError(400, "empty_file", f"{name}: file is empty (0 bytes)")

    def check(info: audio.AudioInfo) -> None:
        check_header(info, name, settings, spec)
        if stream_above_s is not None and info.duration > stream_above_s:
            raise LongerThanBlock(info)

    try:
        waveform, info = audio.load_with_info(data, sample_rate, name=name, check=check)
    except audio.AudioDecodeError as exc:
        raise decode_error(exc) from None
    return DecodedUpload(_pad_to_one_sample(waveform), info)


@contextlib.contextmanager
def on_disk(source: bytes | BinaryIO) -> Iterator[Path]:
    """A temporary file holding ``source`` (bytes, or a binary file read from its start), removed after.

    libsndfile then reads the recording block by block from disk; the upload is never decoded whole.
    """
    with tempfile.NamedTemporaryFile(prefix="vocalis-upload-") as tmp:
        if isinstance(source, bytes):
            tmp.write(source)
        else:
            source.seek(0)
            shutil.copyfileobj(source, tmp, 1 << 20)
        tmp.flush()
        yield Path(tmp.name)


@contextlib.contextmanager
def upload_source(fileobj: BinaryIO) -> Iterator[bytes | Path]:
    """What to score an uploaded file from: its bytes when it is small, else a temporary file on disk."""
    fileobj.seek(0, 2)
    size = fileobj.tell()
    fileobj.seek(0)
    if size <= IN_MEMORY_UPLOAD_BYTES:
        yield fileobj.read()
        return
    with on_disk(fileobj) as path:
        yield path


def store_upload(
    settings: Settings, data: bytes | Path, request_id: str, index: int, name: str
) -> str | None:
    """Keep the raw upload under ``settings.upload_dir`` (when set); returns where it went.

    The stored name starts with a server-made id: the client's ``X-Request-ID`` may repeat, so two
    requests never share (or overwrite) a stored file. The request id stays in the name to find it.
    """
    if settings.upload_dir is None:
        return None
    # the client's file name is reduced to a safe basename: it never chooses where the file goes
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name)[:100] or "upload"
    rid = re.sub(r"[^A-Za-z0-9._-]", "_", request_id)[:40]
    folder = Path(settings.upload_dir) / datetime.now(UTC).strftime("%Y%m%d")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}-{rid}-{index}-{safe}"
    with path.open("xb") as fh:  # exclusive: never overwrite
        if isinstance(data, bytes):
            fh.write(data)
        else:
            with data.open("rb") as src:
                shutil.copyfileobj(src, fh, 1 << 20)
    return str(path)
