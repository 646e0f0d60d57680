"""Decode recordings of any common format into mono float32 waveforms at the model rate.

numpy, soundfile and soxr only: this module is imported by training, prediction and serving alike, and
must never pull in torch.

Formats: whatever libsndfile reads (WAV 8/16/24/32-bit PCM, float, A-law, mu-law, ADPCM; FLAC; OGG/Vorbis;
MP3 with libsndfile >= 1.1) plus WAV files that wrap an MP3 stream (format tag 0x0055), which libsndfile
refuses and which are unwrapped here and decoded as MP3.

Every failure is one typed error, :class:`AudioDecodeError`, naming the file and the reason. Nothing is ever
silently substituted: a file that cannot be read as real audio raises.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf
import soxr

from vocalis.contracts.discovery import describe_os_error, special_file_reason
from vocalis.errors import AudioDecodeError as AudioDecodeError  # the error type of this module

log = logging.getLogger(__name__)

AudioSource = str | Path | bytes | BinaryIO

#: Sample rates outside this range are refused as implausible (the project promises 8 kHz to 500 kHz; a
#: little slack on both sides costs nothing).
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000

_WAVE_FORMAT_MPEGLAYER3 = 0x0055
_WAVE_FORMAT_MPEG = 0x0050
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE


@dataclass(frozen=True)
class AudioInfo:
    """What a recording is, read from its header (no samples decoded)."""

    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        """Duration in seconds."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _name_of(source: AudioSource, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, str | Path):
        return str(source)
    return getattr(source, "name", None) or "<bytes>"


def _read_bytes(source: AudioSource, name: str) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, str | Path):
        try:
            _check_regular(source, name)
            return Path(source).read_bytes()
        except OSError as exc:
            raise AudioDecodeError(name, _os_reason(exc, source)) from None
    data = source.read()
    if isinstance(data, str):  # a text-mode handle: still report it cleanly
        raise AudioDecodeError(name, "stream is opened in text mode")
    return bytes(data)


def _os_reason(exc: OSError, path: str | Path) -> str:
    """The reason for an OS error on ``path``: 'file not found' as is, else 'cannot read file (...)'."""
    reason = describe_os_error(exc, path)
    return reason if reason == "file not found" else f"cannot read file ({reason})"


def _check_regular(path: str | Path, name: str) -> int:
    """The size of a regular file; a pipe, socket or device is refused before it is opened (opening a
    pipe for reading would block until a writer comes)."""
    st = os.stat(path)
    reason = special_file_reason(st.st_mode)
    if reason is not None:
        raise AudioDecodeError(name, reason)
    return st.st_size


class _FileWindow(io.RawIOBase):
    """A read-only view of ``[start, start + length)`` of an open file: libsndfile reads an MP3 stream
    wrapped in a WAV file through it, from disk, without the file ever being loaded."""

    def __init__(self, fh: BinaryIO, start: int, length: int) -> None:
        super().__init__()
        self._fh, self._start, self._length, self._pos = fh, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self._length - self._pos))
        if n == 0:
            return 0
        self._fh.seek(self._start + self._pos)
        data = self._fh.read(n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        self._fh.close()
        super().close()


def _mp3_chunk_in_wav(fh: BinaryIO) -> tuple[int, int] | None:
    """``(offset, length)`` of the MP3 stream in a RIFF/WAVE file whose format tag is MPEG, else None.

    Walks the chunk headers with seeks: reads a few bytes per chunk, whatever sizes the headers claim.
    """
    fh.seek(0, io.SEEK_END)
    size = fh.tell()
    fh.seek(0)
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, fmt_tag, payload = 12, None, None
    for _ in range(10_000):  # a forged file cannot keep the walk going forever
        if pos + 8 > size:
            break
        fh.seek(pos)
        chunk = fh.read(8)
        (length,) = struct.unpack("<I", chunk[4:8])
        if chunk[:4] == b"fmt " and length >= 2:
            (fmt_tag,) = struct.unpack("<H", fh.read(2))
        elif chunk[:4] == b"data":
            payload = (pos + 8, max(0, min(length, size - pos - 8)))  # a header may claim more than there is
        pos += 8 + length + (length & 1)
    if fmt_tag in (_WAVE_FORMAT_MPEGLAYER3, _WAVE_FORMAT_MPEG) and payload and payload[1]:
        return payload
    return None


def _failure_reason(exc: Exception, size: int, head: bytes) -> str:
    """Why libsndfile refused a file, in words that fit the file (not 'possibly a pipe?')."""
    reason = str(exc).split(": ", 1)[-1] if str(exc) else type(exc).__name__
    if size == 0:
        return "file is empty (0 bytes)"
    if head[:4] == b"RIFF" and size < 44:
        return f"truncated WAV header ({size} bytes)"
    if size < 128:
        return f"too short to be an audio file ({size} bytes)"
    if "pipe" in reason.lower():  # libsndfile's guess for data it cannot place: this is a file
        return "unknown or damaged audio format"
    return reason


def _open_path(path: str | Path, name: str) -> sf.SoundFile:
    """Open a file on disk for decoding while reading only its header (never the whole file).

    libsndfile opens the path itself; an MP3 stream wrapped in a WAV file is read through a
    :class:`_FileWindow`. A file that cannot be opened costs O(header) memory, whatever its size.
    """
    try:
        size = _check_regular(path, name)
        fh: BinaryIO = open(path, "rb")  # noqa: SIM115 -- the SoundFile below owns it
    except OSError as exc:
        raise AudioDecodeError(name, _os_reason(exc, path)) from None
    try:
        head = fh.read(64)
        fh.seek(0)
        try:
            return sf.SoundFile(fh, closefd=True)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            first = exc
        where = _mp3_chunk_in_wav(fh)
        if where is not None:
            try:
                return sf.SoundFile(_FileWindow(fh, *where), closefd=True)
            except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
                first = exc
        fh.close()
        raise AudioDecodeError(name, f"not a readable audio file ({_failure_reason(first, size, head)})")
    except OSError as exc:
        fh.close()
        raise AudioDecodeError(name, _os_reason(exc, path)) from None


def _unwrap_mp3_in_wav(data: bytes) -> bytes | None:
    """Return the MP3 stream inside a RIFF/WAVE file whose format tag is MPEG, else None."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, fmt_tag, payload = 12, None, None
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        body = data[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt " and len(body) >= 2:
            (fmt_tag,) = struct.unpack("<H", body[:2])
        elif chunk_id == b"data":
            payload = body
        pos += 8 + size + (size & 1)  # chunks are word aligned
    if fmt_tag in (_WAVE_FORMAT_MPEGLAYER3, _WAVE_FORMAT_MPEG) and payload:
        return payload
    return None


def _open(data: bytes, name: str) -> sf.SoundFile:
    """Open encoded bytes with libsndfile, unwrapping MP3-in-WAV first."""
    mp3 = _unwrap_mp3_in_wav(data)
    try:
        if mp3 is not None:
            # no format= here: for reading, soundfile accepts it only for RAW files and raises
            # TypeError otherwise; libsndfile recognises the MPEG stream from its frame headers
            return sf.SoundFile(io.BytesIO(mp3))
        return sf.SoundFile(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        reason = _failure_reason(exc, len(data), data[:64])
        raise AudioDecodeError(name, f"not a readable audio file ({reason})") from None


def _check_header(snd: sf.SoundFile, name: str) -> AudioInfo:
    info = AudioInfo(
        sample_rate=int(snd.samplerate),
        channels=int(snd.channels),
        frames=int(snd.frames),
        format=str(snd.format),
        subtype=str(snd.subtype),
    )
    if not MIN_SAMPLE_RATE <= info.sample_rate <= MAX_SAMPLE_RATE:
        raise AudioDecodeError(
            name,
            f"sample rate {info.sample_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz",
        )
    if info.channels < 1:
        raise AudioDecodeError(name, "has no channels")
    return info


def info(source: AudioSource, *, name: str | None = None) -> AudioInfo:
    """Read a recording's header: sample rate, channels, frames, format."""
    label = _name_of(source, name)
    if isinstance(source, str | Path):
        with _open_path(source, label) as snd:  # the header only, never the whole file
            return _check_header(snd, label)
    with _open(_read_bytes(source, label), label) as snd:
        return _check_header(snd, label)


def _check_samples(x: np.ndarray, name: str) -> None:
    if x.size == 0:
        raise AudioDecodeError(name, "contains no audio samples")
    finite = np.isfinite(x)
    if not finite.all():
        bad = int(x.size - np.count_nonzero(finite))
        if bad == x.size:
            raise AudioDecodeError(name, "all samples are NaN or infinite")
        raise AudioDecodeError(name, f"{bad} of {x.size} samples are NaN or infinite")


def to_mono(x: np.ndarray) -> np.ndarray:
    """Downmix ``[frames, channels]`` (or ``[frames]``) to ``[frames]`` by averaging the channels."""
    if x.ndim == 1:
        return x
    if x.shape[1] == 1:
        return x[:, 0]
    return x.mean(axis=1, dtype=np.float32)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a mono float32 waveform with soxr (high quality)."""
    if sr_in == sr_out:
        return np.ascontiguousarray(x, dtype=np.float32)
    return np.asarray(soxr.resample(x, sr_in, sr_out, quality="HQ"), dtype=np.float32)


def decode(source: AudioSource, *, name: str | None = None) -> tuple[np.ndarray, int]:
    """Decode a whole recording: returns float32 ``[frames, channels]`` and its sample rate."""
    label = _name_of(source, name)
    data = _read_bytes(source, label)
    with _open(data, label) as snd:
        hdr = _check_header(snd, label)
        try:
            x = snd.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise AudioDecodeError(label, f"decoding failed ({exc})") from None
    _check_samples(x, label)
    return x, hdr.sample_rate


def load(
    source: AudioSource,
    sample_rate: int | None = 32_000,
    *,
    min_duration: float = 0.0,
    name: str | None = None,
) -> np.ndarray:
    """Decode, downmix and resample a recording to a mono float32 waveform.

    Args:
        source: a path, the encoded bytes, or a binary file object.
        sample_rate: target rate in Hz; ``None`` keeps the file's own rate.
        min_duration: recordings shorter than this many seconds raise :class:`AudioDecodeError`.
        name: how to call the source in error messages (defaults to its path).
    """
    label = _name_of(source, name)
    x, sr = decode(source, name=label)
    duration = x.shape[0] / sr
    if duration < min_duration:
        raise AudioDecodeError(label, f"too short: {duration:.3f} s, the minimum is {min_duration:.3f} s")
    mono = to_mono(x)
    return resample(mono, sr, sample_rate) if sample_rate else mono.astype(np.float32)


def stream(
    source: AudioSource,
    sample_rate: int,
    *,
    block_seconds: float = 60.0,
    name: str | None = None,
) -> Iterator[np.ndarray]:
    """Yield a long recording as consecutive mono blocks at ``sample_rate``, in bounded memory.

    The resampler keeps its state across blocks, so the concatenation of the blocks equals (to resampler
    precision) what :func:`load` returns. The encoded file itself is read from disk, not held in memory,
    when ``source`` is a path to a file libsndfile reads directly.
    """
    label = _name_of(source, name)
    if isinstance(source, str | Path):
        snd = _open_path(source, label)  # read from disk block by block, never loaded whole
    else:
        snd = _open(_read_bytes(source, label), label)
    with snd:
        hdr = _check_header(snd, label)
        resampler = (
            soxr.ResampleStream(hdr.sample_rate, sample_rate, 1, dtype="float32", quality="HQ")
            if hdr.sample_rate != sample_rate
            else None
        )
        block = max(1, int(block_seconds * hdr.sample_rate))
        seen = 0
        while True:
            try:
                x = snd.read(block, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
                raise AudioDecodeError(label, f"decoding failed ({exc})") from None
            last = x.shape[0] < block
            if x.shape[0]:
                _check_samples(x, label)
            seen += x.shape[0]
            mono = to_mono(x) if x.shape[0] else np.zeros(0, dtype=np.float32)
            out = resampler.resample_chunk(mono, last=last) if resampler else mono
            if len(out):
                yield np.asarray(out, dtype=np.float32)
            if last:
                break
        if seen == 0:
            raise AudioDecodeError(label, "contains no audio samples")


def load_with_info(
    source: AudioSource,
    sample_rate: int,
    *,
    name: str | None = None,
    check: Callable[[AudioInfo], None] | None = None,
    block_seconds: float = 60.0,
) -> tuple[np.ndarray, AudioInfo]:
    """Open a recording once: read its header, let ``check`` refuse it, decode it to mono at ``sample_rate``.

    ``check`` sees the header before any sample is decoded (a duration limit costs nothing). The samples are
    read block by block and downmixed as they come, so a long multichannel recording never exists in memory
    as one ``[frames, channels]`` array; the result equals :func:`load`'s. The returned info counts the
    frames actually decoded (a truncated file holds fewer than its header says).
    """
    label = _name_of(source, name)
    with _open(_read_bytes(source, label), label) as snd:
        hdr = _check_header(snd, label)
        if check is not None:
            check(hdr)
        block = max(1, int(block_seconds * hdr.sample_rate))
        parts: list[np.ndarray] = []
        frames = 0
        while True:
            try:
                x = snd.read(block, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
                raise AudioDecodeError(label, f"decoding failed ({exc})") from None
            if x.shape[0]:
                _check_samples(x, label)
                parts.append(to_mono(x).copy())
                frames += x.shape[0]
            if x.shape[0] < block:
                break
    if frames == 0:
        raise AudioDecodeError(label, "contains no audio samples")
    mono = parts[0] if len(parts) == 1 else np.concatenate(parts)
    info = AudioInfo(hdr.sample_rate, hdr.channels, frames, hdr.format, hdr.subtype)
    return resample(mono, hdr.sample_rate, sample_rate), info
