"""``vocalis predict --engine ray``: the same detections as the local engine on a local Ray instance (started
and stopped by the command: 2 CPUs here) and on a Ray cluster started by the test (`ray start --head`, one
for the module), broken files in the errors file, resume across engines, a run killed with SIGKILL half-way
that, resumed, gives each file once, and a clear message when Ray is not installed.

The tests that start Ray are marked ``cluster`` (`make test-cluster`; `make test` leaves them out)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from support.predictions import strict_csv_rows
from support.runs import SR, call
from vocalis.inference.resume import journal_path

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
@pytest.mark.cluster
def test_ray_engine_matches_local_and_resumes(
    artifact: Path, folder: Path, ray_head: str, tmp_path: Path
) -> None:
    """The first Ray run starts its own local instance (no ``--address``); the resumed and the fresh run
    join the test's cluster."""
    local = tmp_path / "local.csv"
    done = _run(_cli(str(artifact), str(folder), "-o", str(local)))
    assert done.returncode == 0, done.stderr
    ray_out = tmp_path / "ray.csv"
    # the first half through a manifest, then the whole folder: the second run resumes, on Ray
    good = sorted(p for p in folder.iterdir() if p.stat().st_size > 100)
    manifest = tmp_path / "half.txt"
    manifest.write_text("".join(f"{p}\n" for p in good[:3]))
    local_ray = ("--engine", "ray", "--num-workers", "1")
    first = _run(_cli(str(artifact), str(manifest), "-o", str(ray_out), *local_ray))
    assert first.returncode == 0, first.stderr[-3000:]
    assert {r[0] for r in _rows(ray_out)} == {str(p) for p in good[:3]}
    args = (*local_ray, "--address", ray_head)
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


def _free_ports(n: int) -> list[int]:
    """``n`` TCP ports free right now (held open together, so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _in_session(sid: int) -> list[int]:
    """Live processes of session ``sid`` (a process started with ``start_new_session`` and everything it
    started, however deep: Ray's raylet, GCS, agents and workers keep their starter's session)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # the fields after the command name (which may hold spaces) in /proc/PID/stat: state ppid pgrp sid
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def _end_session(sid: int, grace_s: float) -> list[int]:
    """SIGTERM the session's processes, SIGKILL what is left after ``grace_s``; the pids that had to be
    killed (empty when the session ended by itself)."""
    for pid in _in_session(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _in_session(sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _in_session(sid)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


def _start_head(temp: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str | None]:
    """One try at ``ray start --head --block`` (2 CPUs, its own session, every port chosen here):
    ``(process, address)``, the address ``None`` when the node died starting."""
    port, client, agent, grpc, env_agent, metrics, node, objects = _free_ports(8)
    cmd = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        "--block",
        "--no-monitor",  # no autoscaler process: one Python process less competing with the agents
        f"--port={port}",
        "--num-cpus=2",
        f"--temp-dir={temp}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--ray-client-server-port={client}",
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={grpc}",
        f"--runtime-env-agent-port={env_agent}",
        f"--metrics-export-port={metrics}",
        f"--node-manager-port={node}",
        f"--object-manager-port={objects}",
    ]
    log = temp / "head.log"
    with log.open("w") as fh:
        head = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and head.poll() is None:
        if "Ray runtime started" in log.read_text():
            return head, f"127.0.0.1:{port}"
        # the raylet gives its agents a fixed 15 s to write their port files; on a loaded machine their
        # imports take longer and the raylet aborts, while `ray start` would wait on for minutes: try again
        if any(
            "Check failed" in f.read_text(errors="replace") for f in temp.glob("session_2*/logs/raylet.out")
        ):
            break
        time.sleep(0.5)
    return head, None


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A Ray cluster of one 2-CPU node, started for this module's tests in its own session (``ray start
    --head --block``; up to three tries, each bounded) and stopped after them; the last test's teardown
    fails if any of its processes outlives the stop."""
    pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield from _ray_head(monkeypatch)


def _ray_head(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_", "COVERAGE_"))}
    # workers use this interpreter (not `uv run` in their own folder); `ray start` waits long enough for
    # a raylet that registers late on a busy machine; workers at our priority, not Ray's nice 15 (they
    # starve behind other tests otherwise)
    env.update(RAY_ENABLE_UV_RUN_RUNTIME_ENV="0", RAY_raylet_start_wait_time_s="120", RAY_worker_niceness="0")
    # token authentication, as a real cluster should run (Ray turns it on by default for new clusters):
    # the head and every driver of the test share one token through the environment
    token = secrets.token_hex(16)
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    logs: list[str] = []
    leaked: list[int] = []
    for _ in range(3):
        # Ray's socket paths live under the temp dir and must fit in 107 bytes: a short one, not tmp_path
        temp = Path(tempfile.mkdtemp(prefix="vr", dir="/tmp"))
        head, address = _start_head(temp, env)
        try:
            if address is not None:
                yield address
                break
            aborts = [
                line[:400]
                for f in temp.glob("session_2*/logs/raylet.out")
                for line in f.read_text(errors="replace").splitlines()
                if "Check failed" in line
            ]
            logs.append((temp / "head.log").read_text()[-1000:] + "\n".join(aborts))
        finally:
            if address is None:  # a try that failed starting: `ray start` may not heed SIGTERM yet
                _end_session(head.pid, grace_s=0)
            else:
                head.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes
                with contextlib.suppress(subprocess.TimeoutExpired):
                    head.wait(timeout=60)
                leaked = _end_session(head.pid, grace_s=30)
            head.wait(timeout=30)
            shutil.rmtree(temp, ignore_errors=True)
    else:
        pytest.fail("a 2-CPU Ray node did not start in three tries:\n" + "\n---\n".join(logs))
    assert not leaked, f"Ray processes outlived the cluster's stop: {leaked}"


def _write_clips(root: Path, n: int, seed: int) -> Path:
    """``n`` recordings of 8-24 s in real formats: WAV at the model's rate, FLAC at 48 kHz, stereo OGG."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    labels = ("alpha", "beta", "gamma")
    for k in range(n):
        label, seconds = labels[k % 3], float(rng.uniform(8.0, 24.0))
        if k % 4 == 1:
            sf.write(root / f"c{k:03d}.flac", call(label, seconds, 48_000, rng), 48_000)
        elif k % 4 == 2:
            x = call(label, seconds, 22_050, rng)
            sf.write(root / f"c{k:03d}.ogg", np.stack([x, 0.5 * x], axis=1), 22_050)
        else:
            sf.write(root / f"c{k:03d}.wav", call(label, seconds, SR, rng), SR)
    return root


def _row_sets(rows: list[dict[str, str]]) -> dict[str, Counter[tuple[str, str, str, str]]]:
    out: dict[str, Counter[tuple[str, str, str, str]]] = {}
    for r in rows:
        out.setdefault(r["file"], Counter())[(r["start_s"], r["end_s"], r["label"], r["rank"])] += 1
    return out


def _committed_files(journal: Path) -> int:
    """Files the journal says are committed (a line cut short by a kill does not count)."""
    if not journal.exists():
        return 0
    n = 0
    for line in journal.read_text().split("\n")[1:-1]:
        with contextlib.suppress(json.JSONDecodeError):
            n += len(json.loads(line).get("files", []))
    return n


@pytest.mark.slow
@pytest.mark.cluster
def test_ray_run_killed_half_way_resumes_each_file_once(
    artifact: Path, ray_head: str, tmp_path: Path
) -> None:
    """A Ray driver SIGKILLed mid-run leaves a parseable output holding whole files only; the resumed run
    (on the same cluster) adds exactly the missing files: the local engine's rows, each file once."""
    n = 40
    clips = _write_clips(tmp_path / "clips", n, seed=11)
    (clips / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40)))
    clean = tmp_path / "local.csv"
    done = _run(_cli(str(artifact), str(clips), "-o", str(clean)))
    assert done.returncode == 0, done.stderr[-3000:]
    expected = _row_sets(strict_csv_rows(clean))
    assert len(expected) == n
    want = {(r["file"], r["start_s"], r["rank"]): float(r["confidence"]) for r in strict_csv_rows(clean)}

    out = tmp_path / "ray.csv"
    journal = journal_path(out)
    # a commit after every file: the kill lands between commits, never after the last one
    args = (str(artifact), str(clips), "-o", str(out), "--commit-seconds", "0", "--engine", "ray")
    args += ("--address", ray_head)
    log = tmp_path / "killed.log"
    with log.open("w") as fh:
        driver = subprocess.Popen(_cli(*args), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    seen = 0
    try:
        deadline = time.monotonic() + 300
        while driver.poll() is None and time.monotonic() < deadline:
            if out.exists():
                strict_csv_rows(out)  # readable at every moment, never half a row
                seen += 1
            if 0 < _committed_files(journal) < n:
                break
            time.sleep(0.01)
        assert driver.poll() is None, f"the run ended before it could be killed:\n{log.read_text()[-3000:]}"
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=30)
    # the driver started nothing of its own that outlives it (its Ray workers are the cluster's to end)
    assert not _end_session(driver.pid, grace_s=10)
    assert seen > 0
    partial = _row_sets(strict_csv_rows(out))  # parseable right after the kill
    assert 0 < len(partial) < n
    assert all(rows == expected[f] for f, rows in partial.items())  # whole files only

    resumed = _run(_cli(*args))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "already done" in _said(resumed.stderr)
    final = strict_csv_rows(out)
    got = _row_sets(final)
    assert set(got) == set(expected)  # no gaps
    for f, rows in got.items():  # no duplicates: each file's rows once, the local engine's rows
        assert rows == expected[f], f
    assert max(abs(float(r["confidence"]) - want[(r["file"], r["start_s"], r["rank"])]) for r in final) <= TOL
    assert _errors(out) == {"corrupt.wav"}


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
