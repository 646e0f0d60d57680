"""The BentoML service: `bentoml serve` as a subprocess on a free port, real files posted to it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from support.serving import free_port
from vocalis.serving.app import create_app
from vocalis.serving.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bento_url(artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> object:
    pytest.importorskip("bentoml", reason="bentoml is not installed (the 'bento' extra)")
    bentoml_cli = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or shutil.which("bentoml")
    if bentoml_cli is None:
        pytest.skip("the bentoml command is not on PATH")
    home = tmp_path_factory.mktemp("bento")
    port = free_port()
    env = {
        **os.environ,
        "VOCALIS_MODEL_DIR": str(artifact_dir),
        "VOCALIS_THREADS": "1",
        "BENTOML_HOME": str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    log = (home / "bento.log").open("wb")
    proc = subprocess.Popen(
        [
            bentoml_cli,
            "serve",
            "vocalis.serving.bento_service:VocalisBento",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=home,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            if proc.poll() is not None:  # a service that crashes at start is a failure, never a skip
                pytest.fail(
                    f"bentoml serve exited ({proc.returncode}): {(home / 'bento.log').read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"bentoml serve did not get ready in 90 s: {(home / 'bento.log').read_text()[-2000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_bento_predict_answers_what_the_fastapi_service_answers(
    v1: str, bento_url: str, app_settings: Settings, wav_bytes: bytes
) -> None:
    """One mapper: BentoML's /predict is /v1/predict's file result, for the same file and options."""
    with TestClient(create_app(app_settings)) as client:
        http = client.post(
            "/v1/predict", files={"file": ("call.wav", wav_bytes)}, data={"top_k": 2, "min_conf": 0.3}
        ).json()
    r = httpx.post(
        f"{bento_url}/predict",
        files={"audio_file": ("call.wav", wav_bytes, "audio/wav")},
        data={"top_k": "2", "min_conf": "0.3"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body.pop("model_version") == http.pop("model_version") == v1
    for key in ("request_id", "processing_ms"):
        http.pop(key)
    # same decoding, same graph, one thread each: the same numbers (tolerance 1e-6, the JSON's rounding)
    assert list(body) == list(http)  # (the file name is where BentoML put the upload)
    assert [d["label"] for d in body["detections"]] == [d["label"] for d in http["detections"]]
    assert [[t["label"] for t in d["top"]] for d in body["detections"]] == [
        [t["label"] for t in d["top"]] for d in http["detections"]
    ]
    assert body["summary"]["top_confidence"] == pytest.approx(http["summary"]["top_confidence"], abs=1e-6)
    assert {k: body[k] for k in ("duration_s", "sample_rate", "channels", "window_s", "hop_s")} == {
        k: http[k] for k in ("duration_s", "sample_rate", "channels", "window_s", "hop_s")
    }
    # undecodable input is a client error, not a server error
    bad = httpx.post(
        f"{bento_url}/predict", files={"audio_file": ("x.wav", b"not audio", "audio/wav")}, timeout=60
    )
    assert 400 <= bad.status_code < 500, bad.text


def test_bento_classify_batches_concurrent_requests(
    bento_url: str, artifact_dir: Path, wav_bytes: bytes
) -> None:
    from vocalis.inference import Predictor

    expected = Predictor.from_dir(artifact_dir, threads=1).predict(wav_bytes).summary.top_label

    def one(_: int) -> httpx.Response:
        return httpx.post(
            f"{bento_url}/classify", files=[("audio_files", ("a.wav", wav_bytes, "audio/wav"))], timeout=60
        )

    from prometheus_client.parser import text_string_to_metric_families

    def batches() -> float:
        return sum(
            s.value
            for family in text_string_to_metric_families(httpx.get(f"{bento_url}/metrics").text)
            for s in family.samples
            if s.name == "bentoml_service_adaptive_batch_size_count"
            and s.labels.get("method_name") == "classify"
        )

    # adaptive batching merges concurrent requests: fewer batches than requests. The dispatcher may still
    # run a whole burst one request at a time (it did once, in a CI run on a freshly started machine), so
    # up to three bursts of 16 are sent
    sent, before = 0, batches()
    for _ in range(3):
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(one, range(16)))
        sent += len(responses)
        failed = [r.text for r in responses if r.status_code != 200]
        assert not failed, failed
        for r in responses:
            (item,) = r.json()
            assert item["label"] == expected and item["windows"] == 3
        if batches() - before < sent:
            break
    assert 1 <= batches() - before < sent
    mixed = httpx.post(
        f"{bento_url}/classify",
        files=[
            ("audio_files", ("a.wav", wav_bytes, "audio/wav")),
            ("audio_files", ("b.wav", b"junk", "audio/wav")),
        ],
        timeout=60,
    )
    assert mixed.status_code == 200
    good, bad = mixed.json()
    assert good["label"] == expected and "error" in bad


def test_bento_predict_has_the_services_hop_floor(
    bento_url: str, app_settings: Settings, wav_bytes: bytes
) -> None:
    """VOCALIS_MIN_HOP_S holds for BentoML too: below it a 4xx naming the setting, at or above it the same
    windows as /v1/predict with that hop."""
    floor = app_settings.min_hop_s  # the default, which the bento process reads from the same Settings
    tiny = httpx.post(
        f"{bento_url}/predict",
        files={"audio_file": ("call.wav", wav_bytes, "audio/wav")},
        data={"hop": str(floor / 10)},
        timeout=60,
    )
    assert 400 <= tiny.status_code < 500, tiny.text
    assert "VOCALIS_MIN_HOP_S" in tiny.text and "invalid_option" in tiny.text, tiny.text
    ok = httpx.post(
        f"{bento_url}/predict",
        files={"audio_file": ("call.wav", wav_bytes, "audio/wav")},
        data={"hop": "0.25"},
        timeout=60,
    )
    assert ok.status_code == 200, ok.text
    with TestClient(create_app(app_settings)) as client:
        http = client.post("/v1/predict", files={"file": ("call.wav", wav_bytes)}, data={"hop": 0.25}).json()
    body = ok.json()
    assert body["hop_s"] == http["hop_s"] == 0.25
    # 2.5 s at a 0.25 s hop with 1 s windows: more windows than the card's 1 s hop gives, the same as HTTP
    assert len(body["detections"]) == len(http["detections"]) > 3
    assert [d["start_s"] for d in body["detections"]] == [d["start_s"] for d in http["detections"]]
