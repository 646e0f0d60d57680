"""The CLI-wide rules, through the real console script in a subprocess: a user error is one line on stderr
and exit code 2, ``--debug`` adds the traceback, and flags win over environment variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

VOCALIS = [sys.executable, "-c", "import sys; from vocalis.cli import main; sys.argv[0] = 'vocalis'; main()"]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VOCALIS, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        # a VocalisError from the library: the artifact is not there
        (["predict", "{tmp}/no-model", "{tmp}"], "model artifact directory not found"),
        # a bad option value, checked by the option's range (fractions are 0-1)
        (["predict", "{tmp}", "{tmp}", "--min-conf", "50"], "--min-conf"),
        (["export", "{tmp}", "-o", "{tmp}/a", "--max-drop", "2"], "--max-drop"),
        # an unknown option and a malformed Hydra override
        (["predict", "--no-such-option"], "No such option"),
        (["data", "prepare", "data=no_such_dataset"], "no_such_dataset"),
    ],
)
def test_a_user_error_is_one_line_and_exit_code_2(args: list[str], says: str, tmp_path: Path) -> None:
    out = _run(*[a.format(tmp=tmp_path) for a in args])
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], out.stderr
    assert out.stdout == ""


def test_debug_shows_the_traceback_and_keeps_the_exit_code(tmp_path: Path) -> None:
    out = _run("--debug", "predict", str(tmp_path / "no-model"), str(tmp_path))
    assert out.returncode == 2
    assert "Traceback (most recent call last)" in out.stderr and "ArtifactError" in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: ")


def test_help_and_version_are_not_errors() -> None:
    out = _run("--version")
    assert out.returncode == 0 and out.stdout.startswith("vocalis ")
    out = _run("data", "--help")
    assert out.returncode == 0 and "longfile" in out.stdout


def test_data_longfile_writes_the_recording_and_its_truth(tmp_path: Path) -> None:
    import soundfile as sf

    out = _run("data", "longfile", str(tmp_path / "long.wav"), "--minutes", "0.25", "--sample-rate", "8000")
    assert out.returncode == 0, out.stderr
    info = sf.info(str(tmp_path / "long.wav"))
    assert (info.samplerate, info.frames) == (8000, 15 * 8000)
    truth = (tmp_path / "long.wav.truth.csv").read_text().splitlines()
    assert truth[0] == "start_s,end_s,source"
    assert "long.wav" in out.stdout  # the result on stdout
    missing = _run("data", "longfile", str(tmp_path / "x.wav"), "--from", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "--from" in missing.stderr


def test_the_log_level_flag_wins_over_the_environment(tmp_path: Path) -> None:
    """`serve --log-level` beats VOCALIS_LOG_LEVEL: the service is started with no model so it stops at
    once, after the flag was applied, and the effective level is read back from the settings."""
    code = (
        "import os, sys\n"
        "from vocalis.cli import main\n"
        "from vocalis.serving.settings import Settings\n"
        "try:\n"
        f"    main(['serve', '--model', {str(tmp_path / 'none')!r}, '--log-level', 'debug'])\n"
        "except SystemExit as exc:\n"
        "    print(exc.code, Settings().log_level)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "VOCALIS_LOG_LEVEL": "ERROR"},
    )
    assert out.stdout.split() == ["2", "DEBUG"], out.stderr


#: the audio summary every logged prediction carries
SUMMARY = {
    "rms_dbfs": -20.0, "spectral_centroid_hz": 1000.0, "spectral_bandwidth_hz": 500.0,
    "peak_frequency_hz": 1000.0, "zero_crossing_rate": 0.1,
}  # fmt: skip


def _log_with_rows(db: Path) -> str:
    """A real SQLite prediction log with three rows at known UTC times, one with a formula-like name."""
    from datetime import UTC, datetime

    from vocalis.serving.store import NewPrediction, PredictionStore

    url = f"sqlite:///{db}"
    store = PredictionStore(url)
    times = [datetime(2026, 12, 1, h, 30, tzinfo=UTC) for h in (20, 21, 22)]  # 20:30, 21:30, 22:30 UTC
    names = ["a.wav", "=HYPERLINK(1).wav", "-2+3.wav"]
    store.add(
        [
            NewPrediction(
                request_id=f"r{i}", endpoint="/v1/predict", file_name=name, model_version="v",
                duration_s=1.0, sample_rate=16_000, channels=1, summary=SUMMARY, top_label="x",
                confidence=0.5, probabilities={"x": 0.5}, n_windows=1, latency_ms=1.0, created_at=t,
            )
            for i, (t, name) in enumerate(zip(times, names, strict=True))
        ]
    )  # fmt: skip
    store.close()
    return url


def test_log_export_honours_offsets_and_writes_utc(tmp_path: Path) -> None:
    import pandas as pd

    url = _log_with_rows(tmp_path / "log.db")
    for suffix in ("csv", "parquet"):
        out = tmp_path / f"out.{suffix}"
        # 22:00+01:00 is 21:00 UTC: the 21:30 and 22:30 rows, not 20:30 (an offset ignored would give 1 row)
        res = _run("log", "export", "-o", str(out), "--since", "2026-12-01T22:00:00+01:00",
                   "--database-url", url)  # fmt: skip
        assert res.returncode == 0, res.stderr
        frame = pd.read_csv(out) if suffix == "csv" else pd.read_parquet(out)
        assert list(frame["request_id"]) == ["r1", "r2"]
        stamps = pd.to_datetime(frame["created_at"])
        assert str(stamps.dt.tz) == "UTC"
        assert stamps.iloc[0] == pd.Timestamp("2026-12-01T21:30:00Z")
    names = pd.read_csv(tmp_path / "out.csv")["file_name"].tolist()
    assert names == ["'=HYPERLINK(1).wav", "'-2+3.wav"]  # a spreadsheet shows them, runs nothing


def test_log_export_user_errors_are_one_line(tmp_path: Path) -> None:
    url = _log_with_rows(tmp_path / "log.db")
    typo = tmp_path / "lgo.db"
    res = _run("log", "export", "-o", str(tmp_path / "o.csv"), "--database-url", f"sqlite:///{typo}")
    assert res.returncode == 2 and "no prediction log database there" in res.stderr
    assert not typo.exists()  # no empty database made
    (tmp_path / "notes.db").write_text("not a database, just words\n" * 100)
    cases = [
        ("-o", str(tmp_path / "o.csv"), "--database-url", f"sqlite:///{tmp_path / 'notes.db'}"),
        ("-o", "/proc/vocalis-cannot-write/o.csv", "--database-url", url),
        ("-o", str(tmp_path / "o.csv"), "--database-url", "postgresql+psycopg://u:secret@127.0.0.1:9/x"),
    ]
    for args in cases:
        res = _run("log", "export", *args)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()  # migration retries may log warnings before it
        assert lines[-1].startswith("error:") and "Traceback" not in res.stderr, res.stderr
        assert [line for line in lines if line.startswith("error:")] == lines[-1:]
        print(lines[-1])
        assert "secret" not in res.stderr


def test_train_refuses_a_non_numeric_learning_rate_at_once(tmp_path: Path) -> None:
    res = _run("train", "optimizer.lr=abc", f"paths.root_dir={tmp_path}", "logger=none")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines == ["error: optimizer.lr: must be a number, got 'abc'"]


@pytest.mark.slow
def test_train_refuses_a_single_class_dataset(tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    from support.runs import overrides

    rng = np.random.default_rng(0)
    (tmp_path / "calls" / "alpha").mkdir(parents=True)
    for k in range(8):
        sf.write(tmp_path / "calls" / "alpha" / f"a{k}.wav", rng.normal(0, 0.1, 32_000), 16_000)
    args = [o for o in overrides(tmp_path) if not o.startswith("model.kwargs")]
    res = _run("train", *args)
    assert res.returncode == 2, res.stderr
    assert "only one class (alpha)" in res.stderr.strip().splitlines()[-1]
    assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_train_says_on_the_console_that_it_skipped_files(tmp_path: Path) -> None:
    from support.runs import overrides, write_calls

    write_calls(tmp_path / "calls", clips_per_class=6)
    (tmp_path / "calls" / "alpha" / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40))
    args = [o for o in overrides(tmp_path) if not o.startswith(("model.kwargs", "trainer.max_epochs"))]
    res = _run("train", *args, "trainer.max_epochs=1")
    assert res.returncode == 0, res.stderr
    assert "skipped 1 file(s)" in res.stdout and "skipped.csv" in res.stdout
