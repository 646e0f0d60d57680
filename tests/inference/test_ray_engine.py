"""``vocalis predict --engine ray``: the same detections as the local engine on a local Ray instance (started
and stopped by the command: 2 CPUs here), broken files in the errors file, resume across engines, and a clear
message when Ray is not installed."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from support.runs import SR, call

#: probabilities of the two engines: the same samples, batches of other shapes
TOL = 1e-5


def _cli(*args: str, prelude: str = "") -> list[str]:
    return [sys.executable, "-c", f"{prelude}from vocalis.cli import main; main()", "predict", *args]


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a ``vocalis predict``, with a bounded wait: a stuck Ray run fails the test instead of hanging the
    suite."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=420)


def _said(stderr: str) -> str:
    """The console's message with rich's line wrapping undone."""
    return " ".join(stderr.split())


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """WAV at the model's rate, FLAC at 48 kHz, a 7 s stereo OGG, a corrupt WAV and an empty FLAC."""
    root = tmp_path_factory.mktemp("ray-in")
    rng = np.random.default_rng(2)
    for k, label in enumerate(["alpha", "beta", "gamma", "alpha", "beta", "gamma"]):
        if k % 2:
            sf.write(root / f"f{k}.flac", call(label, float(rng.uniform(0.7, 2.5)), 48_000, rng), 48_000)
        else:
            sf.write(root / f"f{k}.wav", call(label, float(rng.uniform(0.4, 2.5)), SR, rng), SR)
    x = np.concatenate([call(lbl, 2.4, 22_050, rng) for lbl in ("gamma", "alpha", "beta")])
    sf.write(root / "long.ogg", np.stack([x, x], axis=1), 22_050)
    (root / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40)))
    (root / "empty.flac").write_bytes(b"")
    return root


def _rows(path: Path) -> list[tuple[str, str, str, str, str, float]]:
    with path.open(newline="") as fh:
        return [
            (r["file"], r["start_s"], r["end_s"], r["label"], r["rank"], float(r["confidence"]))
            for r in csv.DictReader(fh)
        ]


def _errors(out: Path) -> set[str]:
    with out.with_name(out.name + ".errors.csv").open() as fh:
        return {Path(r["file"]).name for r in csv.DictReader(fh)}


def _same(
    a: list[tuple[str, str, str, str, str, float]], b: list[tuple[str, str, str, str, str, float]]
) -> None:
    assert [r[:5] for r in a] == [r[:5] for r in b]  # same rows, same (deterministic) order
    assert max(abs(x[5] - y[5]) for x, y in zip(a, b, strict=True)) <= TOL


@pytest.mark.slow
def test_ray_engine_matches_local_and_resumes(artifact: Path, folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    local = tmp_path / "local.csv"
    done = _run(_cli(str(artifact), str(folder), "-o", str(local)))
    assert done.returncode == 0, done.stderr
    ray_out = tmp_path / "ray.csv"
    # the first half through a manifest, then the whole folder: the second run resumes, on Ray
    good = sorted(p for p in folder.iterdir() if p.stat().st_size > 100)
    manifest = tmp_path / "half.txt"
    manifest.write_text("".join(f"{p}\n" for p in good[:3]))
    args = ("--engine", "ray", "--num-workers", "1")
    first = _run(_cli(str(artifact), str(manifest), "-o", str(ray_out), *args))
    assert first.returncode == 0, first.stderr[-3000:]
    assert {r[0] for r in _rows(ray_out)} == {str(p) for p in good[:3]}
    second = _run(_cli(str(artifact), str(folder), "-o", str(ray_out), *args))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "3 file(s) already done" in _said(second.stderr)
    # resumed: the rows of the first three files came first, the rest after; as sets per file, the local ones
    got, want = _rows(ray_out), _rows(local)
    key = {r[:5]: r[5] for r in want}
    assert len(got) == len(want) and {r[:5] for r in got} == set(key)
    assert max(abs(r[5] - key[r[:5]]) for r in got) <= TOL
    assert _errors(ray_out) == {"corrupt.wav", "empty.flac"} == _errors(local)

    fresh = tmp_path / "fresh.csv"  # one run over everything: the local engine's rows in the local order
    whole = _run(_cli(str(artifact), str(folder), "-o", str(fresh), *args))
    assert whole.returncode == 0, whole.stderr[-3000:]
    _same(_rows(fresh), want)


def test_missing_ray_names_the_extra(folder: Path, tmp_path: Path) -> None:
    """Refused before the artifact is even read (so a missing artifact here does not matter)."""
    out = subprocess.run(
        _cli(
            str(tmp_path / "no-artifact"),
            str(folder),
            "--engine",
            "ray",
            prelude="import sys; sys.modules['ray'] = None; ",
        ),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "vocalis[ray]" in out.stderr and "Traceback" not in out.stderr
