"""`vocalis serve --model models:/vocalis@production` as a real process on a real MLflow SQLite store:
an alias move + ``POST /v1/admin/reload`` under a bounded load fails no request, a failed resolve keeps the
served version, and the opt-in poll picks up an alias move by itself. ``/v1/model`` and every logged
prediction name the registry version that answered."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import soundfile as sf

from support.serving import VOCALIS, free_port, tone
from vocalis.registry.registry import Registry

#: two registered versions and a service process per test: minutes on a shared CPU
pytestmark = pytest.mark.slow

NAME = "vocalis"
URI = f"models:/{NAME}@production"
TOKEN = "registry-reload"


@pytest.fixture(scope="module")
def served_store(
    tmp_path_factory: pytest.TempPathFactory, good_artifact: Path, worse_artifact: Path
) -> tuple[str, str, str]:
    """A store of its own (the flow tests count the versions of theirs): the two artifacts registered."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow-serve') / 'mlflow.db'}"
    registry = Registry(uri)
    first = registry.register(good_artifact, name=NAME).version
    second = registry.register(worse_artifact, name=NAME).version
    return uri, first, second


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("served-cache")


@pytest.fixture(scope="module")
def wav(good_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A 2.5 s WAV at the models' sample rate (both artifacts share it)."""
    sr = int(json.loads((good_artifact / "model.json").read_text())["sample_rate"])
    path = tmp_path_factory.mktemp("audio") / "call.wav"
    sf.write(path, tone(2.5, sr), sr, subtype="PCM_16")
    return path.read_bytes()


def _serve(store: str, cache: Path, tmp_path: Path, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start `vocalis serve --model models:/vocalis@production` and wait until /ready answers."""
    port = free_port()
    log = (tmp_path / "serve.log").open("ab")
    proc = subprocess.Popen(
        [*VOCALIS, "serve", "--model", URI, "--port", str(port)],
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": store,
            "VOCALIS_MODEL_CACHE": str(cache),
            "VOCALIS_DATABASE_URL": f"sqlite:///{tmp_path / 'log.db'}",
            "VOCALIS_THREADS": "1",
            **env,
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240  # MLflow's import and a download on a loaded 2-core machine
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise AssertionError(f"the service did not start: {(tmp_path / 'serve.log').read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _logged_names(tmp_path: Path) -> Counter[str]:
    with sqlite3.connect(tmp_path / "log.db") as db:
        return Counter(name for (name,) in db.execute("SELECT model_name FROM predictions"))


def test_alias_move_and_reload_under_load_fail_no_request(
    served_store: tuple[str, str, str], cache: Path, wav: bytes, tmp_path: Path
) -> None:
    store, first, second = served_store
    registry = Registry(store)
    registry.set_alias(NAME, first, "production")
    proc, base = _serve(store, cache, tmp_path, VOCALIS_ADMIN_TOKEN=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        before = httpx.get(f"{base}/v1/model", timeout=10).json()
        assert before["model_label"] == f"{NAME}/{first}"
        assert before["registry"] == {"name": NAME, "version": first, "alias": "production", "uri": URI}

        done = threading.Semaphore(0)

        def client_loop(n: int) -> list[int]:
            statuses = []
            with httpx.Client(timeout=60) as client:
                for i in range(n):
                    try:
                        r = client.post(f"{base}/v1/predict", files={"file": (f"{i}.wav", wav)})
                        statuses.append(r.status_code)
                    except httpx.HTTPError:
                        statuses.append(-1)  # a dropped connection is a failed request too
                    done.release()
            return statuses

        with ThreadPoolExecutor(4) as pool:
            loads = [pool.submit(client_loop, 75) for _ in range(4)]
            for _ in range(80):  # let a quarter of the load run on the first version
                done.acquire(timeout=120)
            registry.set_alias(NAME, second, "production")
            reload = httpx.post(f"{base}/v1/admin/reload", headers=auth, timeout=120)
            statuses = [s for f in loads for s in f.result()]

        assert reload.status_code == 200, reload.text
        assert reload.json()["previous_label"] == f"{NAME}/{first}"
        assert reload.json()["model_label"] == f"{NAME}/{second}"
        assert len(statuses) == 300 and Counter(statuses) == {200: 300}, Counter(statuses)
        after = httpx.get(f"{base}/v1/model", timeout=10).json()
        assert after["model_label"] == f"{NAME}/{second}" and after["registry"]["version"] == second

        # the alias is gone: the resolve fails, the service keeps answering with the version it has
        registry.client.delete_registered_model_alias(NAME, "production")
        failed = httpx.post(f"{base}/v1/admin/reload", headers=auth, timeout=120)
        assert failed.status_code == 409 and failed.json()["error"] == "reload_failed", failed.text
        assert "no alias 'production'" in failed.json()["detail"]
        ok = httpx.post(f"{base}/v1/predict", files={"file": ("x.wav", wav)}, timeout=60)
        assert ok.status_code == 200
        assert httpx.get(f"{base}/v1/model", timeout=10).json()["model_label"] == f"{NAME}/{second}"
    finally:
        _stop(proc)
        registry.set_alias(NAME, second, "production")
    names = _logged_names(tmp_path)
    # every logged prediction names the registry version that answered it: both, nothing else
    assert set(names) == {f"{NAME}/{first}", f"{NAME}/{second}"}, names
    assert sum(names.values()) == 301 and names[f"{NAME}/{first}"] >= 80, names


def test_the_poll_picks_up_an_alias_move_without_a_reload_call(
    served_store: tuple[str, str, str], cache: Path, wav: bytes, tmp_path: Path
) -> None:
    store, first, second = served_store
    registry = Registry(store)
    registry.set_alias(NAME, first, "production")
    proc, base = _serve(store, cache, tmp_path, VOCALIS_MODEL_POLL_S="1")
    try:
        assert httpx.get(f"{base}/v1/model", timeout=10).json()["model_label"] == f"{NAME}/{first}"
        assert httpx.post(f"{base}/v1/predict", files={"file": ("a.wav", wav)}, timeout=60).status_code == 200
        registry.set_alias(NAME, second, "production")
        t0 = time.monotonic()
        label = None
        # one poll a second; the swap itself loads the model. 60 s bounds a loaded shared machine
        while time.monotonic() - t0 < 60:
            label = httpx.get(f"{base}/v1/model", timeout=10).json()["model_label"]
            if label == f"{NAME}/{second}":
                break
            time.sleep(0.25)
        picked_up_s = time.monotonic() - t0
        assert label == f"{NAME}/{second}", (tmp_path / "serve.log").read_text()[-3000:]
        assert httpx.post(f"{base}/v1/predict", files={"file": ("b.wav", wav)}, timeout=60).status_code == 200
    finally:
        _stop(proc)
    print(f"alias move picked up by the poll after {picked_up_s:.1f} s")
    assert _logged_names(tmp_path) == {f"{NAME}/{first}": 1, f"{NAME}/{second}": 1}
