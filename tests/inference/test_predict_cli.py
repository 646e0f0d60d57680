"""``vocalis predict``: output formats that agree, bad files reported and skipped, exit codes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from support.runs import SR, call
from vocalis.cli import app
from vocalis.inference.writers import RAVEN_COLUMNS

runner = CliRunner()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder: two good recordings (one in a sub-folder), a corrupt WAV, an empty file and a text file."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(11)
    sf.write(root / "a.wav", np.concatenate([call("alpha", 1.5, SR, rng), call("beta", 1.5, SR, rng)]), SR)
    (root / "sub").mkdir()
    sf.write(root / "sub" / "g.flac", call("gamma", 2.2, 48_000, rng), 48_000)
    (root / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40)))
    (root / "empty.flac").write_bytes(b"")
    (root / "notes.txt").write_text("field notes, not audio")
    return root


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["predict", *args])
    return result.exit_code, result.output


def test_formats_agree_and_raven_columns(artifact: Path, inputs: Path, tmp_path: Path) -> None:
    outs = {fmt: tmp_path / f"out.{fmt}" for fmt in ("csv", "json", "raven")}
    for fmt, out in outs.items():
        code, text = _run(str(artifact), str(inputs), "-r", "--format", fmt, "-o", str(out), "--top-k", "2")
        assert code == 0, text
    with outs["csv"].open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["file", "start_s", "end_s", "label", "confidence", "rank"]
    doc = json.loads(outs["json"].read_text())
    assert doc["model"]["classes"] == ["alpha", "beta", "gamma"]
    from_json = [
        (f["file"], w["start_s"], w["end_s"], t["label"], t["confidence"], t["rank"])
        for f in doc["files"]
        for w in f["detections"]
        for t in w["top"]
    ]
    from_csv = [
        (
            r["file"],
            float(r["start_s"]),
            float(r["end_s"]),
            r["label"],
            float(r["confidence"]),
            int(r["rank"]),
        )
        for r in rows
    ]
    assert len(from_csv) == len(from_json) > 0
    for c, j in zip(from_csv, from_json, strict=True):
        assert (c[0], c[3], c[5]) == (j[0], j[3], j[5])
        assert c[1] == pytest.approx(j[1], abs=1e-4) and c[4] == pytest.approx(j[4], abs=1e-6)
    files = {f["file"]: f for f in doc["files"]}
    assert files[str(inputs / "sub" / "g.flac")]["summary"]["top_label"] == "gamma"
    assert files[str(inputs / "sub" / "g.flac")]["sample_rate"] == 48_000
    with outs["raven"].open() as fh:
        raven = list(csv.reader(fh, delimiter="\t"))
    assert raven[0] == RAVEN_COLUMNS
    body = raven[1:]
    assert len(body) == len(rows)
    assert [int(r[0]) for r in body] == list(range(1, len(body) + 1))
    assert {r[9] for r in body} == {"a.wav", "g.flac"}
    assert {(r[5], r[6]) for r in body} == {("50.0", "7500.0")}  # the featurizer's f_min/f_max
    assert [(r[7], float(r[8])) for r in body] == [(c[3], c[4]) for c in from_csv]


def test_bad_files_are_reported_and_skipped(artifact: Path, inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    code, text = _run(str(artifact), str(inputs), "-r", "-o", str(out), "--min-conf", "0.5")
    assert code == 0, text
    assert "corrupt.wav" in text and "notes.txt" in text
    with (tmp_path / "o.csv.errors.csv").open() as fh:
        errors = {Path(r["file"]).name: r["reason"] for r in csv.DictReader(fh)}
    assert set(errors) == {"corrupt.wav", "empty.flac", "notes.txt"}
    assert "unsupported" in errors["notes.txt"] and "empty" in errors["empty.flac"]
    rows = list(csv.DictReader(out.open()))
    assert rows and all(float(r["confidence"]) >= 0.5 for r in rows)
    # without -r the sub-folder is not searched
    code, _ = _run(str(artifact), str(inputs), "-o", str(tmp_path / "flat.csv"))
    assert code == 0
    assert {Path(r["file"]).name for r in csv.DictReader((tmp_path / "flat.csv").open())} == {"a.wav"}


def test_strict_and_nothing_processed_exit_non_zero(artifact: Path, inputs: Path, tmp_path: Path) -> None:
    code, _ = _run(str(artifact), str(inputs), "-r", "--strict", "-o", str(tmp_path / "s.csv"))
    assert code != 0
    code, _ = _run(str(artifact), str(inputs / "corrupt.wav"), "-o", str(tmp_path / "n.csv"))
    assert code != 0
    code, _ = _run(str(artifact), str(inputs / "a.wav"), "--strict", "-o", str(tmp_path / "ok.csv"))
    assert code == 0


def test_console_script_errors_are_one_line(inputs: Path, tmp_path: Path) -> None:
    cli = [sys.executable, "-c", "from vocalis.cli import main; main()"]
    out = subprocess.run(
        [*cli, "predict", str(tmp_path / "no-model"), str(inputs)], capture_output=True, text=True
    )
    assert out.returncode == 2  # a user error
    assert "error:" in out.stderr and "not found" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
