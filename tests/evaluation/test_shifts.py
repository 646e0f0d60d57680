"""Accuracy under controlled shifts: the shifts do what they say, and ``vocalis evaluate --shift`` measures
the tiny run's real degradation (its classes live in three frequency bands, so a low-pass below the upper
two bands must cost accuracy, one above all three must not)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vocalis.errors import ConfigError
from vocalis.evaluation.shifts import apply_shift

SR = 16_000
runner = CliRunner()


def _tone(freq: float, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(x.size, 1 / SR)[int(np.argmax(spec))])


def test_noise_is_added_at_the_asked_signal_to_noise_ratio() -> None:
    x = _tone(440.0, seconds=4.0, amp=0.1)
    for snr in (20.0, 0.0):
        noise = apply_shift(x, "noise", snr, SR, seed=1) - x
        measured = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
        assert measured == pytest.approx(snr, abs=0.2)  # 64 000 samples: the noise power is within 5 %


def test_gain_scales_and_clips_and_lowpass_filters() -> None:
    x = _tone(440.0)
    np.testing.assert_allclose(apply_shift(x, "gain", -20.0, SR), x * 0.1, atol=1e-7)
    loud = apply_shift(x, "gain", 20.0, SR)
    assert float(np.abs(loud).max()) == 1.0 and np.mean(np.abs(loud) == 1.0) > 0.5  # clipped, not scaled
    passed = apply_shift(_tone(300.0), "lowpass", 1000.0, SR)
    stopped = apply_shift(_tone(3000.0), "lowpass", 1000.0, SR)
    mid = slice(SR // 8, -SR // 8)  # away from the edges, where a tone switched on abruptly rings
    assert np.std(passed[mid]) / np.std(_tone(300.0)) > 0.95
    assert 20 * np.log10(np.std(stopped[mid]) / np.std(_tone(3000.0))) < -60  # 8th order, 1.6 octaves


def test_resample_scales_pitch_and_timeshift_delays() -> None:
    x = _tone(1000.0)
    slow = apply_shift(x, "resample", 0.8, SR)
    assert _peak_hz(slow) == pytest.approx(800.0, abs=2.0)
    assert len(slow) == pytest.approx(len(x) / 0.8, abs=2)
    late = apply_shift(x, "timeshift", 0.5, SR)
    assert len(late) == len(x) + SR // 2 and not late[: SR // 2].any()
    np.testing.assert_array_equal(late[SR // 2 :], x)


def test_a_bad_shift_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="--shift: 'reverb'"):
        apply_shift(_tone(440.0), "reverb", 1.0, SR)
    with pytest.raises(ConfigError, match="cutoff must be in"):
        apply_shift(_tone(440.0), "lowpass", 9000.0, SR)


def test_evaluate_shift_measures_the_runs_degradation(trained_run: Path, tmp_path: Path) -> None:
    from vocalis.cli import app
    from vocalis.evaluation.evaluate import evaluate_run

    out = tmp_path / "lowpass.json"
    args = ["evaluate", str(trained_run), "--split", "train", "--shift", "lowpass", "-o", str(out)]
    result = runner.invoke(app, [*args, "--strength", "7000", "--strength", "1000"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = json.loads(out.read_text())
    assert [r["strength"] for r in rows] == [None, 7000.0, 1000.0]
    clean, above, below = (r["accuracy"] for r in rows)
    n = rows[0]["n"]
    # unshifted, the waveform path scores what evaluation on the cached features scores (same windows)
    cached = evaluate_run(trained_run, split="train", output_dir=tmp_path / "eval").metrics["clip_accuracy"]
    assert clean == pytest.approx(cached, abs=1 / n + 1e-9)
    assert clean >= 0.8  # the tiny run hears its three bands
    assert above >= clean - 1 / n - 1e-9  # 7 kHz keeps every band (alpha < 0.7, beta < 2.5, gamma < 6 kHz)
    assert below <= clean - 0.3  # 1 kHz removes the beta and gamma bands: two classes of three lose their cue
    assert "unshifted" in result.output


def test_evaluate_refuses_an_unknown_shift(trained_run: Path) -> None:
    from vocalis.cli import app

    result = runner.invoke(app, ["evaluate", str(trained_run), "--shift", "reverb"])
    assert result.exit_code != 0
    assert "reverb" in (result.output + str(result.exception))
