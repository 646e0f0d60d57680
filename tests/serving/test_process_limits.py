"""`vocalis serve` as a real process under hostile clients: memory per request, stalled sockets, the
prediction log's folder deleted while serving, and settings that cannot work."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from support.serving import VOCALIS, free_port, start_server
from vocalis.serving.store import PredictionStore

pytestmark = pytest.mark.slow


def _hwm_mb(pid: int) -> float:
    """Peak resident memory of a process (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _reset_hwm(pid: int) -> None:
    """Set a process's peak resident memory (VmHWM) back to its current RSS (Linux ``clear_refs`` 5), so
    that a test on the shared server measures the peak of its own requests only."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass(frozen=True)
class Server:
    """The module's `vocalis serve` process: its pid, base URL and prediction log."""

    pid: int
    base: str
    db_url: str
    db_folder: Path


@pytest.fixture(scope="module")
def server(artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `vocalis serve` for the memory and log-folder tests (a start-up costs seconds on a loaded
    machine): at most 5000 windows per file, long uploads scored in 30 s blocks, the log in ``db/``."""
    tmp = tmp_path_factory.mktemp("limits-server")
    folder = tmp / "db"
    db_url = f"sqlite:///{folder / 'log.db'}"
    port = free_port()
    proc = start_server(
        artifact_dir,
        db_url,
        port,
        tmp / "server.log",
        extra_env={"VOCALIS_MAX_WINDOWS": "5000", "VOCALIS_STREAM_BLOCK_S": "30"},
    )
    try:
        yield Server(proc.pid, f"http://127.0.0.1:{port}", db_url, folder)
    finally:
        proc.terminate()
        proc.wait(10)


def _long_wav(seconds: float, sr: int = 8_000) -> bytes:
    rng = np.random.default_rng(0)
    x = (0.2 * rng.standard_normal(int(seconds * sr))).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype="PCM_U8")
    return buf.getvalue()


def test_hostile_hops_are_refused_fast_and_memory_stays_bounded(server: Server, wav_bytes: bytes) -> None:
    url = f"{server.base}/v1/predict"
    long = _long_wav(600.0)  # 10 min, 8-bit at 8 kHz: 4.8 MB
    assert httpx.post(url, files={"file": ("a.wav", wav_bytes)}, timeout=60).status_code == 200
    _reset_hwm(server.pid)
    base = _hwm_mb(server.pid)
    for hop in ("0.001", "0.00001", "1e-9"):
        t0 = time.monotonic()
        r = httpx.post(url, files={"file": ("a.wav", long)}, data={"hop": hop}, timeout=60)
        assert r.status_code == 422 and r.json()["error"] == "invalid_option", r.text
        assert time.monotonic() - t0 < 10
    # allowed hop, too many windows: refused on the header, before decoding
    t0 = time.monotonic()
    r = httpx.post(url, files={"file": ("a.wav", long)}, data={"hop": "0.05"}, timeout=60)
    assert r.status_code == 413 and r.json()["error"] == "too_many_windows", r.text
    assert time.monotonic() - t0 < 10
    # 600 s at a 0.125 s hop: 4793 windows of 1 s, predicted. Cut at once they would take
    # 4793 * 16000 * 4 B = 307 MB; scored in 30 s blocks and batches they take one block and one batch
    r = httpx.post(url, files={"file": ("a.wav", long)}, data={"hop": "0.125"}, timeout=300)
    assert r.status_code == 200, r.text
    assert len(r.json()["detections"]) == 4793
    grown = _hwm_mb(server.pid) - base
    print(f"peak RSS {base:.0f} MB after a small request, +{grown:.0f} MB after the long one")
    assert grown < 200, f"peak RSS grew by {grown:.0f} MB over the first small request"


def test_a_long_upload_is_scored_in_blocks_in_bounded_memory(
    server: Server, artifact_dir: Path, tmp_path: Path, wav_bytes: bytes
) -> None:
    """A 50-minute upload goes through Predictor.predict_stream from the spooled file, 30 s at a time:
    the server's peak RSS grows by less than 120 MB (decoded whole at the model's 16 kHz the waveform
    alone is 192 MB, beside the 96 MB decode at 8 kHz), and the result is the in-process Predictor's."""
    from vocalis.inference import Predictor

    minutes = 50
    path = tmp_path / "long.wav"
    path.write_bytes(_long_wav(minutes * 60.0))  # 8-bit at 8 kHz: 24 MB
    url = f"{server.base}/v1/predict"
    assert httpx.post(url, files={"file": ("a.wav", wav_bytes)}, timeout=60).status_code == 200
    _reset_hwm(server.pid)  # the peak of this test's requests only, whatever ran on the server before
    base = _hwm_mb(server.pid)
    with path.open("rb") as fh:
        r = httpx.post(url, files={"file": ("long.wav", fh)}, timeout=600)
    grown = _hwm_mb(server.pid) - base
    print(f"peak RSS {base:.0f} MB after a small request, +{grown:.0f} MB after {minutes} min")
    assert r.status_code == 200, r.text
    assert grown < 120, f"peak RSS grew by {grown:.0f} MB for a {minutes}-minute upload"
    body = r.json()
    # in process, other blocks (60 s): the windows and their labels must not depend on the blocking
    expected = Predictor.from_dir(artifact_dir, threads=1).predict_stream(path, top_k=3, name="long.wav")
    assert body["duration_s"] == pytest.approx(minutes * 60.0, abs=1e-3)
    assert (body["sample_rate"], body["channels"]) == (8_000, 1)
    assert len(body["detections"]) == len(expected.windows) == minutes * 60
    got = [(d["start_s"], d["label"]) for d in body["detections"]]
    assert got == [(pytest.approx(w.start_s, abs=1e-6), w.top[0][0]) for w in expected.windows]
    conf = np.array([d["confidence"] for d in body["detections"]])
    assert np.allclose(conf, [w.top[0][1] for w in expected.windows], atol=1e-4)
    assert body["summary"]["top_label"] == expected.summary.top_label
    # the log row has the file's facts and a drift summary of the audio (RMS of 0.2-sigma noise: -14 dBFS)
    (row,) = [r for r in PredictionStore(server.db_url).rows() if r["file_name"] == "long.wav"]
    assert row["n_windows"] == minutes * 60 and row["duration_s"] == pytest.approx(minutes * 60.0, abs=1e-3)
    assert row["rms_dbfs"] == pytest.approx(20 * np.log10(0.2), abs=0.5)


def test_stalled_connections_are_closed_and_uploads_bounded(
    artifact_dir: Path, tmp_path: Path, wav_bytes: bytes
) -> None:
    port = free_port()
    server = start_server(
        artifact_dir,
        f"sqlite:///{tmp_path / 'log.db'}",
        port,
        tmp_path / "server.log",
        extra_env={
            "VOCALIS_HEADER_TIMEOUT_S": "1",
            "VOCALIS_BODY_TIMEOUT_S": "2",
            "VOCALIS_MAX_CONCURRENT_UPLOADS": "3",
        },
    )
    socks: list[socket.socket] = []

    def connect(payload: bytes) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", port), timeout=15)
        if payload:
            s.sendall(payload)
        socks.append(s)
        return s

    def closed_after(s: socket.socket) -> tuple[float, bytes]:
        t0 = time.monotonic()
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return time.monotonic() - t0, data

    body_head = (
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 100000\r\n\r\n--b\r\n"
    )
    try:
        idle = connect(b"")
        partial = connect(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Le")
        stalled = [connect(body_head) for _ in range(3)]
        time.sleep(0.3)
        # /health is not an upload: answered while three uploads stall
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
        # a fourth upload is over the bound: 503 at once
        r = httpx.post(f"http://127.0.0.1:{port}/v1/predict", files={"file": ("a.wav", wav_bytes)})
        assert r.status_code == 503 and r.json()["error"] == "too_many_uploads", r.text
        waited, data = closed_after(idle)
        assert data == b"" and waited < 5
        waited, data = closed_after(partial)
        assert data == b"" and waited < 5
        for s in stalled:
            waited, data = closed_after(s)
            assert data.startswith(b"HTTP/1.1 408") and b"request_timeout" in data, data[:300]
            assert waited < 6
        # the stalled uploads are gone: a real one is served
        r = httpx.post(f"http://127.0.0.1:{port}/v1/predict", files={"file": ("a.wav", wav_bytes)})
        assert r.status_code == 200
    finally:
        for s in socks:
            s.close()
        server.terminate()
        server.wait(10)


def test_deleting_the_log_folder_is_503_until_it_is_back(server: Server, wav_bytes: bytes) -> None:
    """The module's server (it may have logged other tests' requests): its log folder is deleted while it
    serves, then made again; the test leaves the server working."""
    base, folder = server.base, server.db_folder

    def predict() -> httpx.Response:
        return httpx.post(f"{base}/v1/predict", files={"file": ("a.wav", wav_bytes)}, timeout=30)

    assert predict().status_code == 200
    shutil.rmtree(folder)
    try:
        for _ in range(2):
            r = predict()
            assert r.status_code == 503 and r.json()["error"] == "log_unavailable", r.text
            assert "gone" in r.json()["detail"]
        ready = httpx.get(f"{base}/ready", timeout=10)
        assert ready.status_code == 503 and ready.json()["error"] == "log_unavailable"
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200
    finally:
        folder.mkdir(exist_ok=True)
    assert httpx.get(f"{base}/ready", timeout=10).status_code == 200
    r = predict()
    assert r.status_code == 200
    rid = r.json()["request_id"]
    # the acknowledged prediction is in the log at the configured path, not in a deleted file: the new
    # file holds it alone
    assert PredictionStore(server.db_url).request_ids() == {rid}


#: bind a folder ($1) read-only over itself, then run the rest of the arguments
_READ_ONLY_MOUNT = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"VOCALIS_CORS_ORIGINS": "[not json"}, "VOCALIS_CORS_ORIGINS"),
        ({"VOCALIS_CORS_ORIGINS": "example.org/path"}, "VOCALIS_CORS_ORIGINS"),
        ({"VOCALIS_MAX_UPLOAD_BYTES": "-5"}, "VOCALIS_MAX_UPLOAD_BYTES"),
        ({"VOCALIS_DATABASE_URL": "mongodb://x/y"}, "VOCALIS_DATABASE_URL"),
        ({"BROKEN_ONNX": "1"}, "not a loadable ONNX model"),
        ({"READ_ONLY_DB": "1"}, "not writable"),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(
    artifact_dir: Path, tmp_path: Path, env: dict[str, str], words: str
) -> None:
    import os

    model = artifact_dir
    db_url = f"sqlite:///{tmp_path / 'log.db'}"
    if env.pop("BROKEN_ONNX", None):
        model = tmp_path / "broken"
        shutil.copytree(artifact_dir, model)
        (model / "model.onnx").write_bytes(b"this is not onnx")
    command = [*VOCALIS, "serve", "--model", str(model), "--port", str(free_port())]
    if env.pop("READ_ONLY_DB", None):
        ro = tmp_path / "ro"
        ro.mkdir()
        PredictionStore(f"sqlite:///{ro / 'log.db'}").close()
        db_url = f"sqlite:///{ro / 'log.db'}"
        if os.geteuid() == 0:
            # file modes do not stop root: the folder becomes a real read-only mount (EROFS for root
            # too), bound in a private mount namespace that ends with the command, so nothing leaks
            command = ["unshare", "-m", "sh", "-c", _READ_ONLY_MOUNT, "sh", str(ro), *command]
            if shutil.which("unshare") is None or subprocess.run([*command[:2], "true"]).returncode:
                pytest.skip("root, and no private mount namespace here to make a read-only mount")
        else:
            ro.chmod(0o555)
            (ro / "log.db").chmod(0o444)
    res = subprocess.run(
        command,
        env={**os.environ, "VOCALIS_DATABASE_URL": db_url, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "Traceback" not in out and words in out, out
    assert len([line for line in res.stderr.splitlines() if line.strip()]) <= 3, out
