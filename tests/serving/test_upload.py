"""Decoding an upload once: the header check comes first, the block-wise decode equals vocalis.audio.load."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from support.serving import tone
from vocalis import audio
from vocalis.serving.api_errors import ApiError
from vocalis.serving.settings import Settings
from vocalis.serving.upload import decode_upload


def _flac(x: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="FLAC")
    return buf.getvalue()


def test_block_wise_decode_equals_load() -> None:
    data = _flac(tone(2.3, sr=44_100, channels=4), 44_100)
    # blocks of 0.5 s: five blocks, the last partial; downmixed per block, resampled once
    wave, info = audio.load_with_info(data, 16_000, name="array.flac", block_seconds=0.5)
    np.testing.assert_array_equal(wave, audio.load(data, 16_000, name="array.flac"))  # bit-exact
    assert (info.sample_rate, info.channels, info.frames) == (44_100, 4, int(2.3 * 44_100))


def test_the_header_check_runs_before_any_sample_is_decoded() -> None:
    data = _flac(tone(3.0), 16_000)
    with pytest.raises(ApiError) as err:
        decode_upload(data, "long.flac", 16_000, Settings(max_duration_s=2.0))
    assert (err.value.status, err.value.error) == (413, "audio_too_long") and "long.flac" in err.value.detail
    seen: list[audio.AudioInfo] = []

    def refuse(info: audio.AudioInfo) -> None:
        seen.append(info)
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        audio.load_with_info(data, 16_000, check=refuse)
    assert seen[0].frames == 48_000  # the check saw the header


def test_only_sample_less_audio_is_refused() -> None:
    empty = io.BytesIO()
    sf.write(empty, np.zeros((0, 1), np.float32), 16_000, format="WAV")
    with pytest.raises(ApiError) as err:
        decode_upload(empty.getvalue(), "empty.wav", 16_000, Settings())
    assert (err.value.status, err.value.error) == (400, "empty_audio")
    one = io.BytesIO()
    sf.write(one, np.full((1, 1), 0.5, np.float32), 44_100, format="WAV", subtype="FLOAT")
    upload = decode_upload(one.getvalue(), "one.wav", 16_000, Settings())
    # one sample at 44.1 kHz resamples to none at 16 kHz: kept as one sample for the window to pad
    assert upload.waveform.shape == (1,) and upload.info.frames == 1


def test_block_wise_summary_equals_the_whole_waveforms(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The drift summary of a streamed upload is summarize() of the whole waveform, one block at a time."""
    from vocalis.contracts.audio_summary import summarize
    from vocalis.serving.stream_summary import summarize_blocks, summarize_file

    rng = np.random.default_rng(3)
    t = np.arange(200_000) / 16_000
    x = (0.3 * np.sin(2 * np.pi * (500 + 40 * t) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    whole = summarize(x, 16_000).to_dict()
    cuts = np.sort(rng.choice(np.arange(1, x.size), size=37, replace=False))
    blocks = np.split(x, cuts)  # uneven blocks, some shorter than a spectral frame
    got = summarize_blocks(iter(blocks), x.size, 16_000).to_dict()
    assert got == pytest.approx(whole, rel=1e-6, abs=1e-9)
    # a length one sample off the estimate (a resampler's rounding) moves nothing a drift test sees
    off = summarize_blocks(iter(blocks), x.size + 1, 16_000).to_dict()
    assert off == pytest.approx(whole, rel=1e-3)
    # from a file at another rate, decoded and resampled in 1 s blocks, against the whole decode
    path = tmp_path / "a.wav"
    sf.write(path, x, 16_000, subtype="PCM_16")
    info = audio.info(path)
    from_file = summarize_file(path, 8_000, info, name="a.wav", block_s=1.0).to_dict()
    assert from_file == pytest.approx(summarize(audio.load(path, 8_000), 8_000).to_dict(), rel=1e-4)
