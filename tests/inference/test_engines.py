"""The pipelined local engine and resumable output: the same windows as ``predict_stream``, and a run killed
with SIGKILL half-way that, resumed, ends with exactly one row set per file and was readable throughout."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from support.predictions import strict_csv_rows
from support.runs import SR, call
from vocalis.cli import app
from vocalis.errors import VocalisError
from vocalis.inference import Predictor
from vocalis.inference.engine import LocalEngine
from vocalis.inference.jobs import header_duration, plan_jobs
from vocalis.inference.resume import journal_path

runner = CliRunner()
LABELS = ("alpha", "beta", "gamma")
#: |Δprob| between engines for files at the model's rate: the same samples, other batch shapes
SAME_RATE_TOL = 1e-5
#: ... and for resampled files cut into segments: soxr one-shot per segment vs streaming (docs/predict.md)
RESAMPLED_TOL = 2e-3


def _write_folder(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` short recordings of real formats: WAV at the model's rate, FLAC at 48 kHz, stereo OGG."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        label = LABELS[k % 3]
        kind = k % 4
        if kind == 1:
            sf.write(root / f"c{k:03d}.flac", call(label, float(rng.uniform(0.6, 3.2)), 48_000, rng), 48_000)
        elif kind == 2:
            x = call(label, float(rng.uniform(0.6, 3.2)), 22_050, rng)
            sf.write(root / f"c{k:03d}.ogg", np.stack([x, 0.5 * x], axis=1), 22_050)
        else:
            sf.write(root / f"c{k:03d}.wav", call(label, float(rng.uniform(0.3, 3.2)), SR, rng), SR)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 short recordings, a corrupt WAV and an empty FLAC."""
    root = _write_folder(tmp_path_factory.mktemp("clips") / "clips", 24)
    (root / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40)))
    (root / "empty.flac").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def long_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two 9.3 s recordings: at the model's rate, and at 44.1 kHz stereo (split into segments below)."""
    root = tmp_path_factory.mktemp("long")
    rng = np.random.default_rng(5)
    a = np.concatenate([call(lbl, 3.1, SR, rng) for lbl in LABELS])
    sf.write(root / "long16k.wav", a, SR)
    b = np.concatenate([call(lbl, 3.1, 44_100, rng) for lbl in LABELS])
    sf.write(root / "long44k.flac", np.stack([b, b[::-1]], axis=1), 44_100)
    return [root / "long16k.wav", root / "long44k.flac"]


def _duration(path: str) -> float:
    """The header's duration; 0 (one whole-file job, whose decoding names the problem) when unreadable."""
    try:
        return header_duration(path)
    except VocalisError:
        return 0.0


def _engine_outcomes(artifact: Path, paths: list[Path], workers: int, segment_s: float) -> dict[str, object]:
    p = Predictor.from_dir(artifact, threads=1)
    spec = p.window_spec()
    names = [str(f) for f in paths]
    jobs = plan_jobs(names, [_duration(f) for f in names], spec, segment_s=segment_s)
    return dict(LocalEngine(p, workers=workers).run(jobs, spec, top_k=3))


@pytest.mark.parametrize("workers", [0, 2])
def test_local_engine_matches_predict_stream(
    artifact: Path, folder: Path, long_files: list[Path], workers: int
) -> None:
    p = Predictor.from_dir(artifact, threads=1)
    paths = sorted(folder.iterdir()) + long_files
    # 2 s segments: the 9.3 s files become 5 segment jobs each, decoded by different workers
    got = _engine_outcomes(artifact, paths, workers, segment_s=2.0)
    assert list(got) == [str(f) for f in paths]  # input order, whatever order the workers finished in
    assert isinstance(got[str(folder / "corrupt.wav")], str)
    assert "empty" in str(got[str(folder / "empty.flac")])
    for f in paths:
        if f.name in ("corrupt.wav", "empty.flac"):
            continue
        ref = p.predict_stream(f)
        fp = got[str(f)]
        assert not isinstance(fp, str), fp
        tol = SAME_RATE_TOL if sf.info(f).samplerate == SR else RESAMPLED_TOL
        np.testing.assert_allclose(
            [(w.start_s, w.end_s) for w in fp.windows], [(w.start_s, w.end_s) for w in ref.windows], atol=1e-9
        )
        np.testing.assert_allclose(fp.probabilities(), ref.probabilities(), atol=tol, rtol=0)
        assert fp.duration_s == pytest.approx(ref.duration_s, abs=1e-6)
        assert (fp.sample_rate, fp.channels) == (ref.sample_rate, ref.channels)
        # whole files take the streaming path's samples exactly, resampled or not
        if f.parent == folder:
            np.testing.assert_allclose(fp.probabilities(), ref.probabilities(), atol=SAME_RATE_TOL, rtol=0)


def _row_sets(rows: list[dict[str, str]]) -> dict[str, list[tuple[str, str, str]]]:
    out: dict[str, list[tuple[str, str, str]]] = {}
    for r in rows:
        out.setdefault(r["file"], []).append((r["start_s"], r["label"], r["rank"]))
    return out


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from vocalis.cli import main; main()", "predict", *args]


@pytest.mark.slow
def test_sigkill_then_resume_gives_each_file_once(artifact: Path, tmp_path: Path) -> None:
    clips = _write_folder(tmp_path / "many", 160, seed=3)
    (clips / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40)))
    clean = tmp_path / "clean.csv"
    done = subprocess.run(_cli(str(artifact), str(clips), "-o", str(clean)), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    expected = _row_sets(strict_csv_rows(clean))
    assert len(expected) == 160

    out = tmp_path / "out.csv"
    args = (str(artifact), str(clips), "-o", str(out), "--commit-seconds", "0.1", "--workers", "1")
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = journal_path(out)
    seen_valid = 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists():
                strict_csv_rows(out)  # readable at every moment, never half a row
                seen_valid += 1
            lines = journal.read_text().splitlines() if journal.exists() else []
            if sum(1 for line in lines[2:] if '"files": ["' in line) >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed: give it more files"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert seen_valid > 0
    partial = _row_sets(strict_csv_rows(out))  # parseable right after the kill
    assert 0 < len(partial) < 160
    assert all(Counter(rows) == Counter(expected[f]) for f, rows in partial.items())

    resumed = subprocess.run(_cli(*args), capture_output=True, text=True)  # resume is the default
    assert resumed.returncode == 0, resumed.stderr
    assert "already done" in resumed.stderr
    final = strict_csv_rows(out)
    got = _row_sets(final)
    assert set(got) == set(expected)  # no gaps
    for f, rows in got.items():  # no duplicates: each file's rows once, the same rows as a clean run
        assert Counter(rows) == Counter(expected[f]), f
    clean_conf = {
        (r["file"], r["start_s"], r["rank"]): float(r["confidence"]) for r in strict_csv_rows(clean)
    }
    for r in final:
        assert float(r["confidence"]) == pytest.approx(
            clean_conf[(r["file"], r["start_s"], r["rank"])], abs=2e-6
        )
    with (tmp_path / "out.csv.errors.csv").open() as fh:
        assert [Path(r["file"]).name for r in csv.DictReader(fh)] == ["corrupt.wav"]


def test_resume_cuts_back_an_uncommitted_chunk(artifact: Path, folder: Path, tmp_path: Path) -> None:
    """A kill between the output's rename and the journal line: the resume drops the chunk and redoes it."""
    for fmt in ("csv", "json", "raven", "parquet"):
        out = tmp_path / f"out.{fmt}"
        # a commit as often as the engine allows: several chunks however fast the machine is
        cmd = ["predict", str(artifact), str(folder), "-f", fmt, "-o", str(out), "--commit-seconds", "0"]
        res = runner.invoke(app, cmd)
        assert res.exit_code == 0, res.output
        full = _read_any(out, fmt)
        journal = journal_path(out)
        lines = journal.read_text().splitlines(keepends=True)
        assert len(lines) >= 3, lines  # the header line and at least two chunks
        last = json.loads(lines[-1])
        assert last["files"], lines[-1]
        # forget the last commit, as if the process died after writing the output but before the journal
        journal.write_text("".join(lines[:-1]) + lines[-1][:10])
        res = runner.invoke(app, cmd)
        assert res.exit_code == 0, res.output
        assert "already done" in res.output
        again = _read_any(out, fmt)
        assert Counter(r[:3] for r in again) == Counter(r[:3] for r in full), fmt
        for a, b in zip(sorted(again), sorted(full), strict=True):
            assert a[3] == pytest.approx(b[3], abs=2e-6)
        # a third run has nothing left to do and leaves the output as it is
        before = _read_any(out, fmt)
        res = runner.invoke(app, ["predict", str(artifact), str(folder), "-f", fmt, "-o", str(out)])
        assert res.exit_code == 0, res.output
        assert _read_any(out, fmt) == before


def _read_any(out: Path, fmt: str) -> list[tuple[str, float, int, float]]:
    """(file, start_s, rank, confidence) of every row of an output in any format."""
    if fmt == "csv":
        return [
            (r["file"], float(r["start_s"]), int(r["rank"]), float(r["confidence"]))
            for r in strict_csv_rows(out)
        ]
    if fmt == "json":
        doc = json.loads(out.read_text())
        return [
            (f["file"], d["start_s"], t["rank"], t["confidence"])
            for f in doc["files"]
            for d in f["detections"]
            for t in d["top"]
        ]
    if fmt == "raven":
        with out.open() as fh:
            body = list(csv.reader(fh, delimiter="\t"))[1:]
        assert [int(r[0]) for r in body] == list(range(1, len(body) + 1))  # numbered through, no repeats
        return [(r[9], float(r[3]), 0, float(r[8])) for r in body]
    import pyarrow.parquet as pq

    t = pq.read_table(out).to_pylist()
    return [(r["file"], r["start_s"], r["rank"], r["confidence"]) for r in t]


def test_resume_refuses_other_settings_and_overwrite_starts_over(
    artifact: Path, folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "o.csv"
    assert runner.invoke(app, ["predict", str(artifact), str(folder), "-o", str(out)]).exit_code == 0
    res = runner.invoke(app, ["predict", str(artifact), str(folder), "-o", str(out), "--top-k", "1"])
    assert (
        res.exit_code != 0 and "top_k: 3 -> 1" in str(res.exception) and "--overwrite" in str(res.exception)
    )
    res = runner.invoke(
        app, ["predict", str(artifact), str(folder), "-o", str(out), "--top-k", "1", "--overwrite"]
    )
    assert res.exit_code == 0, res.output
    assert {r["rank"] for r in strict_csv_rows(out)} == {"1"}
    plain = tmp_path / "plain.csv"
    plain.write_text("file\n")
    res = runner.invoke(app, ["predict", str(artifact), str(folder), "-o", str(plain)])
    assert res.exit_code != 0 and "no journal" in str(res.exception)


def test_manifest_of_paths(artifact: Path, folder: Path, tmp_path: Path) -> None:
    wavs = sorted(folder.glob("c00*.wav"))
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,note\n" + "".join(f"{w},x\n" for w in wavs) + "missing.wav,y\n")
    out = tmp_path / "m.out.csv"
    res = runner.invoke(app, ["predict", str(artifact), str(manifest), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert set(_row_sets(strict_csv_rows(out))) == {str(w) for w in wavs}
    with (tmp_path / "m.out.csv.errors.csv").open() as fh:
        assert [Path(r["file"]).name for r in csv.DictReader(fh)] == ["missing.wav"]


@pytest.mark.parametrize(("cpus", "expected"), [(1, 0), (2, 0), (4, 2), (16, 8)])
def test_default_decoders_none_on_two_cpus_half_above(
    monkeypatch: pytest.MonkeyPatch, cpus: int, expected: int
) -> None:
    """On 1-2 CPUs onnxruntime's threads fill the cores (docs/benchmarks.md): the engine decodes in line."""
    import vocalis.inference.engine as engine

    monkeypatch.setattr(engine, "default_threads", lambda: cpus)
    assert engine.default_workers() == expected
    p = object.__new__(Predictor)
    p.batch_size = 8
    assert LocalEngine(p).workers == expected
    assert LocalEngine(p, workers=1).workers == 1  # --workers N still asks for N
