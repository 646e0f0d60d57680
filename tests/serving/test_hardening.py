"""Limits and error paths of the service in-process: windows per request, the hop's floor, stored upload
names, 500s with a request id, metrics labels, the model card without server paths, reload validation."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from support.serving import SR, tone
from vocalis.contracts.windows import WindowSpec
from vocalis.inference import Predictor
from vocalis.serving.app import create_app
from vocalis.serving.settings import Settings
from vocalis.serving.store import PredictionStore


def _settings(artifact_dir: Path, tmp_path: Path, **extra: Any) -> Settings:
    return Settings(
        model_dir=artifact_dir,
        database_url=f"sqlite:///{tmp_path / 'log.db'}",
        threads=1,
        admin_token="s3cret",
        **extra,
    )


def _post(client: TestClient, data: bytes, name: str = "a.wav", **kw: Any) -> Any:
    headers = kw.pop("headers", None)
    return client.post("/v1/predict", files={"file": (name, data, "audio/wav")}, data=kw, headers=headers)


@pytest.mark.parametrize("n", [1, 16_000, 16_001, 57_123])
@pytest.mark.parametrize("hop", [0.05, 0.3, 1.0, 2.7])
def test_windows_cut_in_batches_are_the_whole_cut(n: int, hop: float) -> None:
    spec = WindowSpec(1.0, hop, SR)
    wave = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    for bs in (1, 3, 16):
        batches = list(Predictor._cut_batches(wave, spec, bs))
        assert all(len(b) <= bs for b in batches)
        np.testing.assert_array_equal(np.concatenate(batches), spec.cut(wave))


def test_hop_below_the_floor_is_422_and_too_many_windows_413(
    artifact_dir: Path, tmp_path: Path, wav_bytes: bytes
) -> None:
    settings = _settings(artifact_dir, tmp_path, max_windows=10, min_hop_s=0.05)
    with TestClient(create_app(settings)) as client:
        r = _post(client, wav_bytes, hop="0.00001")
        assert r.status_code == 422 and r.json()["error"] == "invalid_option"
        assert "VOCALIS_MIN_HOP_S" in r.json()["detail"]
        # 2.5 s with a 0.1 s hop: 16 windows of 1 s, over the limit of 10
        r = _post(client, wav_bytes, hop="0.1")
        assert r.status_code == 413 and r.json()["error"] == "too_many_windows", r.text
        assert "16 windows" in r.json()["detail"] and "VOCALIS_MAX_WINDOWS" in r.json()["detail"]
        # in a batch the refused file is that file's error, the other file is predicted
        r = client.post(
            "/v1/predict/batch",
            files=[("files", ("a.wav", wav_bytes)), ("files", ("b.wav", wav_bytes))],
            data={"hop": "0.25"},
        )
        assert [item["status"] for item in r.json()["results"]] == [200, 200]  # 7 windows each
        ok = _post(client, wav_bytes, hop="0.25")
        assert ok.status_code == 200 and len(ok.json()["detections"]) == 7
    assert PredictionStore(settings.database_url).count() == 3


def test_same_client_request_id_never_shares_a_stored_upload(
    artifact_dir: Path, tmp_path: Path, wav_bytes: bytes
) -> None:
    uploads = tmp_path / "uploads"
    settings = _settings(artifact_dir, tmp_path, upload_dir=uploads)
    other = io.BytesIO()
    sf.write(other, tone(1.5, freq=300.0), SR, format="WAV", subtype="PCM_16")
    with TestClient(create_app(settings)) as client:
        for data in (wav_bytes, other.getvalue()):
            r = _post(client, data, "same.wav", headers={"X-Request-ID": "fixed-id"})
            assert r.status_code == 200 and r.json()["request_id"] == "fixed-id"
    rows = PredictionStore(settings.database_url).rows()
    paths = [row["upload_path"] for row in rows]
    assert len(set(paths)) == 2
    assert sorted(Path(p).read_bytes() for p in paths) == sorted([wav_bytes, other.getvalue()])


def test_a_500_names_the_request_id(artifact_dir: Path, tmp_path: Path) -> None:
    app = create_app(_settings(artifact_dir, tmp_path))

    def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/boom", headers={"X-Request-ID": "trace-me"})
    assert r.status_code == 500
    assert r.json() == {
        "error": "internal_error",
        "detail": "the server failed; see its log for this request id",
        "request_id": "trace-me",
    }
    assert r.headers["x-request-id"] == "trace-me"


def test_docs_schema_and_static_are_not_unmatched(artifact_dir: Path, tmp_path: Path) -> None:
    with TestClient(create_app(_settings(artifact_dir, tmp_path))) as client:
        assert client.get("/docs").status_code == 200
        assert client.get("/openapi.json").status_code == 200
        client.get("/static/nothing-here.js")
        client.get("/no/such/page")
        text = client.get("/metrics").text
    endpoints = {
        line.split('endpoint="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith("vocalis_requests_total{")
    }
    assert {"/docs", "/openapi.json", "/static"} <= endpoints
    assert "unmatched" in endpoints  # the page that does not exist still is


def test_model_card_shows_no_absolute_server_paths(artifact_dir: Path, tmp_path: Path) -> None:
    card_file = json.loads((artifact_dir / "model.json").read_text())
    assert any(str(v).startswith("/") for v in card_file.get("source", {}).values())  # there are some
    with TestClient(create_app(_settings(artifact_dir, tmp_path))) as client:
        card = client.get("/v1/model").json()

    def strings(x: Any) -> list[str]:
        if isinstance(x, dict):
            return [s for v in x.values() for s in strings(v)]
        if isinstance(x, list):
            return [s for v in x for s in strings(v)]
        return [x] if isinstance(x, str) else []

    assert not [s for s in strings(card) if s.startswith("/") or str(tmp_path) in s]
    assert card["version"] == card_file["version"]


def test_reload_refuses_a_card_whose_window_disagrees_with_the_onnx_input(
    artifact_dir: Path, tmp_path: Path, wav_bytes: bytes
) -> None:
    served = tmp_path / "served"
    shutil.copytree(artifact_dir, served)
    settings = _settings(served, tmp_path)
    with TestClient(create_app(settings)) as client:
        card = json.loads((served / "model.json").read_text())
        card["window_s"] = 2.0
        card.pop("input_samples", None)
        (served / "model.json").write_text(json.dumps(card))
        r = client.post("/v1/admin/reload", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 409 and r.json()["error"] == "reload_failed"
        assert "samples" in r.json()["detail"]
        assert _post(client, wav_bytes).status_code == 200  # still the old, consistent model
