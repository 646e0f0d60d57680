"""`vocalis serve` as a real process: crash safety of the prediction log, model reload under load."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from support.serving import free_port, start_server
from vocalis.serving.store import PredictionStore

pytestmark = pytest.mark.slow


def test_no_acknowledged_prediction_is_lost_on_sigkill(
    artifact_dir: Path, tmp_path: Path, wav_bytes: bytes
) -> None:
    db_url = f"sqlite:///{tmp_path / 'log.db'}"
    port = free_port()
    server = start_server(artifact_dir, db_url, port, tmp_path / "server.log")
    acknowledged: list[str] = []
    url = f"http://127.0.0.1:{port}/v1/predict"

    def one(i: int) -> str | None:
        try:
            r = httpx.post(url, files={"file": (f"{i}.wav", wav_bytes)}, timeout=30)
        except httpx.HTTPError:
            return None  # cut off by the kill: never acknowledged, so it may or may not be logged
        return r.json()["request_id"] if r.status_code == 200 else None

    try:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(one, i) for i in range(40)]
            # kill while requests are still in flight
            for i, fut in enumerate(futures):
                rid = fut.result()
                if rid:
                    acknowledged.append(rid)
                if i == 24:
                    os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
    finally:
        if server.poll() is None:
            server.kill()
    assert len(acknowledged) >= 20
    # restart on the same database: it opens (WAL recovered) and still has every acknowledged id
    server = start_server(artifact_dir, db_url, port, tmp_path / "server.log")
    try:
        assert httpx.post(url, files={"file": ("after.wav", wav_bytes)}, timeout=30).status_code == 200
    finally:
        server.terminate()
        server.wait(10)
    logged = PredictionStore(db_url).request_ids()
    missing = set(acknowledged) - logged
    assert not missing, f"{len(missing)} acknowledged predictions missing from the log"


def test_reload_under_load_fails_no_request(
    v1: str, v2: str, artifact_dir: Path, artifact_dir_v2: Path, tmp_path: Path, wav_bytes: bytes
) -> None:
    current = tmp_path / "current"
    current.symlink_to(artifact_dir)
    port = free_port()
    server = start_server(
        current,
        f"sqlite:///{tmp_path / 'log.db'}",
        port,
        tmp_path / "server.log",
        extra_env={"VOCALIS_ADMIN_TOKEN": "reload-me"},
    )
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer reload-me"}

    def client_loop(n: int) -> list[tuple[int, str]]:
        out = []
        with httpx.Client(timeout=30) as c:
            for i in range(n):
                r = c.post(f"{base}/v1/predict", files={"file": (f"{i}.wav", wav_bytes)})
                out.append((r.status_code, r.json().get("model_version", r.text)))
        return out

    try:
        with ThreadPoolExecutor(5) as pool:
            loads = [pool.submit(client_loop, 25) for _ in range(4)]
            reloads = []
            for target in (artifact_dir_v2, artifact_dir, artifact_dir_v2):
                time.sleep(0.4)  # spread the reloads over the load
                tmp_link = tmp_path / "next"
                tmp_link.symlink_to(target)
                os.replace(tmp_link, current)  # atomic switch of what the settings point at
                reloads.append(httpx.post(f"{base}/v1/admin/reload", headers=auth, timeout=30))
            results = [x for f in loads for x in f.result()]
        assert [r.status_code for r in reloads] == [200, 200, 200]
        assert [r.json()["model_version"] for r in reloads] == [v2, v1, v2]
        assert len(results) == 100 and all(status == 200 for status, _ in results), results
        assert {v for _, v in results} <= {v1, v2}
        assert httpx.get(f"{base}/v1/model").json()["version"] == v2
        # a reload that fails keeps the running model
        (tmp_path / "broken").mkdir()
        tmp_link = tmp_path / "next"
        tmp_link.symlink_to(tmp_path / "broken")
        os.replace(tmp_link, current)
        r = httpx.post(f"{base}/v1/admin/reload", headers=auth, timeout=30)
        assert r.status_code == 409 and r.json()["error"] == "reload_failed"
        assert (
            httpx.post(f"{base}/v1/predict", files={"file": ("x.wav", wav_bytes)}).json()["model_version"]
            == v2
        )
    finally:
        server.terminate()
        server.wait(10)
    log_text = (tmp_path / "server.log").read_text()
    assert "model reloaded" in log_text
