"""vocalis.audio: every decoder path on files the tests write, bad files, streaming."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vocalis import audio
from vocalis.audio import AudioDecodeError


def tone(sr: int, seconds: float = 0.5, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    """A sine at ``freq`` (half amplitude), the same in every channel."""
    t = np.arange(int(sr * seconds)) / sr
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


def mp3_bytes(x: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="MP3", subtype="MPEG_LAYER_III")
    return buf.getvalue()


def mp3_in_wav(mp3: bytes, sr: int, channels: int = 1) -> bytes:
    """Wrap an MP3 stream in RIFF/WAVE with format tag 0x0055 (MPEGLAYER3WAVEFORMAT), as some recorders do."""
    fmt = struct.pack("<HHIIHHH", 0x0055, channels, sr, 16000, 1, 0, 12)
    fmt += struct.pack("<HIHHH", 1, 2, 417, 1, 1393)  # wID, fdwFlags, nBlockSize, nFramesPerBlock, delay
    fact = struct.pack("<I", 0)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"fact" + struct.pack("<I", len(fact)) + fact
    body += b"data" + struct.pack("<I", len(mp3)) + mp3 + (b"\0" if len(mp3) % 2 else b"")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def dominant_freq(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)])


# tolerance of each lossy or quantised format against the float original (max abs sample error)
PCM_CASES = [
    ("WAV", "PCM_U8", 1e-2),
    ("WAV", "PCM_16", 1e-4),
    ("WAV", "PCM_24", 1e-6),
    ("WAV", "PCM_32", 1e-8),
    ("WAV", "FLOAT", 0.0),
    ("WAV", "ALAW", 2e-2),
    ("WAV", "ULAW", 2e-2),
    ("FLAC", "PCM_16", 1e-4),
    ("FLAC", "PCM_24", 1e-6),
]


@pytest.mark.parametrize(("fmt", "subtype", "tol"), PCM_CASES)
def test_lossless_and_companded_formats_decode_to_the_written_samples(
    tmp_path: Path, fmt: str, subtype: str, tol: float
) -> None:
    sr = 16_000
    x = tone(sr)
    path = tmp_path / f"x_{subtype}.{fmt.lower()}"
    sf.write(path, x, sr, format=fmt, subtype=subtype)
    y, rate = audio.decode(path)
    assert rate == sr and y.shape == (len(x), 1) and y.dtype == np.float32
    assert np.max(np.abs(y[:, 0] - x)) <= tol
    assert audio.info(path).frames == len(x)


@pytest.mark.parametrize(
    ("fmt", "subtype", "ext"), [("OGG", "VORBIS", "ogg"), ("MP3", "MPEG_LAYER_III", "mp3")]
)
def test_lossy_formats_keep_the_pitch(tmp_path: Path, fmt: str, subtype: str, ext: str) -> None:
    sr = 32_000
    x = tone(sr, 1.0, 1000.0)
    path = tmp_path / f"x.{ext}"
    sf.write(path, x, sr, format=fmt, subtype=subtype)
    y = audio.load(path, 32_000)
    # codecs add delay and padding: compare the content, not sample by sample
    assert abs(len(y) - len(x)) < 0.1 * sr
    assert dominant_freq(y, sr) == pytest.approx(1000.0, abs=5.0)


def test_mp3_inside_a_wav_container_is_unwrapped(tmp_path: Path) -> None:
    sr = 22_050
    x = tone(sr, 1.0, 660.0)
    data = mp3_in_wav(mp3_bytes(x, sr), sr)
    path = tmp_path / "wrapped.wav"
    path.write_bytes(data)
    mp3 = mp3_bytes(x, sr)
    # the unwrapper hands libsndfile the bare MP3 stream (older libsndfile refuses tag 0x0055 in WAV)
    assert audio._unwrap_mp3_in_wav(data) == mp3
    hdr = audio.info(path)
    assert hdr.sample_rate == sr and hdr.channels == 1
    y = audio.load(path, 32_000)
    assert dominant_freq(y, 32_000) == pytest.approx(660.0, abs=5.0)
    assert audio.load(data, 32_000, name="wrapped").shape == y.shape  # bytes work too


@pytest.mark.parametrize("sr", [8_000, 500_000])
def test_extreme_sample_rates_resample_to_the_model_rate(tmp_path: Path, sr: int) -> None:
    path = tmp_path / f"x_{sr}.wav"
    sf.write(path, tone(sr, 0.5, 1500.0), sr, subtype="PCM_16")
    y = audio.load(path, 32_000)
    assert len(y) == round(0.5 * 32_000)
    assert dominant_freq(y, 32_000) == pytest.approx(1500.0, abs=5.0)


@pytest.mark.parametrize("channels", [2, 8])
def test_multichannel_is_downmixed_by_averaging(tmp_path: Path, channels: int) -> None:
    sr = 16_000
    x = tone(sr, 0.25, channels=channels)
    x[:, 0] = 0.0  # one silent channel: the mean is (channels - 1) / channels of the tone
    path = tmp_path / f"x_{channels}ch.wav"
    sf.write(path, x, sr, subtype="FLOAT")
    assert audio.info(path).channels == channels
    y = audio.load(path, sr)
    np.testing.assert_allclose(y, x[:, 1] * (channels - 1) / channels, atol=1e-6)


def _wav_header(data_len: int, sr: int = 16_000) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, sr, sr * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 4 + 8 + len(fmt) + 8 + data_len)
        + b"WAVEfmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", data_len)
    )


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.wav"
    sf.write(good, tone(16_000), 16_000, subtype="PCM_16")
    files = {
        "empty": b"",
        "truncated": good.read_bytes()[:30],
        "text": b"this is not audio, just a text file renamed to .wav\n" * 10,
        "zero_data": _wav_header(0),
    }
    out = {}
    for name, data in files.items():
        p = tmp_path / f"{name}.wav"
        p.write_bytes(data)
        out[name] = p
    nan = tmp_path / "all_nan.wav"
    sf.write(nan, np.full(1600, np.nan, dtype=np.float32), 16_000, subtype="FLOAT")
    out["all_nan"] = nan
    return out


@pytest.mark.parametrize("kind", ["empty", "truncated", "text", "zero_data", "all_nan"])
def test_bad_files_raise_a_decode_error_naming_the_file(tmp_path: Path, kind: str) -> None:
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(AudioDecodeError) as err:
        audio.load(path, 32_000)
    assert str(err.value).startswith(f"{path}: ")
    assert err.value.source == str(path) and err.value.reason
    assert isinstance(err.value, ValueError)


def test_missing_file_and_directory_raise_decode_errors(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError, match="file not found"):
        audio.load(tmp_path / "nope.wav")
    with pytest.raises(AudioDecodeError, match="directory"):
        audio.load(tmp_path)


@pytest.mark.parametrize("sr", [16_000, 32_000, 44_100])
def test_streaming_equals_whole_file_load(tmp_path: Path, sr: int) -> None:
    rng = np.random.default_rng(0)
    x = (0.3 * rng.standard_normal(int(sr * 7.3))).astype(np.float32)
    path = tmp_path / "long.wav"
    sf.write(path, x, sr, subtype="FLOAT")
    whole = audio.load(path, 32_000)
    blocks = list(audio.stream(path, 32_000, block_seconds=2.0))
    assert len(blocks) >= 3
    streamed = np.concatenate(blocks)
    assert len(streamed) == len(whole)
    # the streaming resampler carries its state over block edges: equal to float32 rounding
    np.testing.assert_allclose(streamed, whole, atol=1e-5)
