"""The HTTP API in-process (FastAPI TestClient over the real app, a real artifact, a real SQLite log)."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from support.serving import CLASSES, SR, tone
from vocalis.serving.app import create_app
from vocalis.serving.settings import Settings
from vocalis.serving.store import PredictionStore


def encode(x: np.ndarray, sr: int, fmt: str = "WAV", subtype: str | None = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.fixture
def client(app_settings: Settings) -> Any:
    with TestClient(create_app(app_settings)) as c:
        yield c


def post(client: TestClient, data: bytes, name: str = "a.wav", **form: Any) -> Any:
    return client.post("/v1/predict", files={"file": (name, data, "audio/wav")}, data=form)


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# ------------------------------------------------------------------------------------------ endpoints


def test_predict_returns_windows_summary_version_and_request_id(
    v1: str, client: TestClient, wav_bytes: bytes
) -> None:
    r = post(client, wav_bytes, "call.wav", top_k=2, site="reef-1", device="hydrophone-7")
    assert r.status_code == 200, r.text
    body = r.json()
    # 2.5 s in 1 s windows, hop 1 s: windows at 0, 1, 2 (the last clipped at 2.5 s)
    assert [(d["start_s"], d["end_s"]) for d in body["detections"]] == [(0.0, 1.0), (1.0, 2.0), (2.0, 2.5)]
    for d in body["detections"]:
        assert d["label"] in CLASSES and 0 < d["confidence"] <= 1
        assert len(d["top"]) == 2 and d["top"][0]["label"] == d["label"]
    assert body["summary"]["top_label"] in CLASSES
    assert sum(body["summary"]["mean_probs"].values()) == pytest.approx(1.0, abs=1e-4)
    assert (body["duration_s"], body["sample_rate"], body["channels"]) == (2.5, SR, 1)
    assert body["model_version"] == v1 and body["file"] == "call.wav"
    assert body["request_id"] == r.headers["x-request-id"] and body["processing_ms"] > 0


def test_predict_matches_the_in_process_predictor(
    client: TestClient, wav_bytes: bytes, artifact_dir: Path
) -> None:
    from vocalis.inference import Predictor

    expected = Predictor.from_dir(artifact_dir, threads=1).predict(wav_bytes)
    body = post(client, wav_bytes).json()
    for d, w in zip(body["detections"], expected.windows, strict=True):
        assert d["confidence"] == pytest.approx(float(w.probs.max()), abs=1e-5)  # same graph, same input
    assert body["summary"]["top_label"] == expected.summary.top_label


def test_client_request_id_is_echoed_and_a_bad_one_replaced(client: TestClient, wav_bytes: bytes) -> None:
    r = client.post("/v1/predict", files={"file": ("a.wav", wav_bytes)}, headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123" and r.json()["request_id"] == "abc-123"
    r = client.get("/health", headers={"X-Request-ID": "bad id with spaces\n"})
    assert r.headers["x-request-id"] != "bad id with spaces\n" and len(r.headers["x-request-id"]) == 32


def _varied(seconds: float = 4.0) -> np.ndarray:
    """A tone, then noise, then a chirp, then near-silence: windows the untrained net scores differently."""
    rng = np.random.default_rng(1)
    quarter = int(seconds * SR / 4)
    t = np.arange(quarter) / SR
    parts = [
        0.3 * np.sin(2 * np.pi * 800 * t),
        0.3 * rng.standard_normal(quarter),
        0.3 * np.sin(2 * np.pi * (300 + 3000 * t) * t),
        0.001 * rng.standard_normal(quarter),
    ]
    return np.concatenate(parts).astype(np.float32)[:, None]


def test_min_conf_filters_labels_and_drops_windows_left_without_one(
    client: TestClient, artifact_dir: Path
) -> None:
    from vocalis.inference import Predictor

    data = encode(_varied(), SR)
    probs = Predictor.from_dir(artifact_dir, threads=1).predict(data).probabilities()
    best = np.sort(probs.max(axis=1))
    min_conf = float((best[0] + best[-1]) / 2)
    # the untrained net is nearly uniform, but its windows still differ by 1e-4s: far more than the 1e-6
    # float noise between two runs of the same graph on the same samples, so no window sits on the threshold
    assert np.abs(best - min_conf).min() > 1e-5, best

    body = post(client, data, top_k=3, min_conf=min_conf).json()
    kept = [i for i, p in enumerate(probs) if p.max() >= min_conf]
    assert 0 < len(kept) < len(probs)  # the threshold drops some windows and keeps others
    assert [d["start_s"] for d in body["detections"]] == [float(i) for i in kept]  # 1 s windows, 1 s hop
    for d, i in zip(body["detections"], kept, strict=True):
        want = [CLASSES[j] for j in np.argsort(-probs[i]) if probs[i][j] >= min_conf]
        assert [t["label"] for t in d["top"]] == want  # labels below min_conf left out of the top-k
        assert [t["rank"] for t in d["top"]] == list(range(1, len(want) + 1))
        assert d["label"] == want[0] and d["confidence"] == pytest.approx(probs[i].max(), abs=1e-5)
    # the summary always covers every window
    assert body["summary"]["top_confidence"] == pytest.approx(float(probs.max()), abs=1e-5)
    assert post(client, data, min_conf=0.0).json()["detections"].__len__() == len(probs)


def test_http_json_equals_the_cli_json(client: TestClient, artifact_dir: Path, tmp_path: Path) -> None:
    """One mapper: the file part of /v1/predict's answer is `vocalis predict --format json`'s file entry."""
    import json

    from typer.testing import CliRunner

    from vocalis.cli import app

    path = tmp_path / "varied.wav"
    path.write_bytes(encode(_varied(), SR))
    out = tmp_path / "out.json"
    options = {"top_k": 2, "min_conf": 0.3, "hop": 0.5}
    flags = ["--top-k", "2", "--min-conf", "0.3", "--hop", "0.5"]
    res = CliRunner().invoke(
        app, ["predict", str(artifact_dir), str(path), "--format", "json", "-o", str(out), *flags]
    )
    assert res.exit_code == 0, res.output
    (cli_file,) = json.loads(out.read_text())["files"]
    body = post(client, path.read_bytes(), str(path), **options).json()
    http_file = {k: v for k, v in body.items() if k not in ("request_id", "model_version", "processing_ms")}
    assert cli_file["detections"], "the options should leave some detections to compare"
    # the CLI streams the file and HTTP decodes it whole: the same windows, probabilities equal to 1e-5
    _assert_same_json(http_file, cli_file, tol=1e-5)


def _assert_same_json(a: Any, b: Any, tol: float, where: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), (where, list(a), b)
        for k in a:
            _assert_same_json(a[k], b[k], tol, f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_json(x, y, tol, f"{where}[{i}]")
    elif isinstance(a, float) and not isinstance(b, bool):
        assert b == pytest.approx(a, abs=tol), (where, a, b)
    else:
        assert a == b, (where, a, b)


def test_batch_gives_each_file_its_result_or_error(client: TestClient, wav_bytes: bytes) -> None:
    files = [
        ("files", ("good.wav", wav_bytes, "audio/wav")),
        ("files", ("text.wav", b"this is not audio at all", "audio/wav")),
        ("files", ("empty.wav", b"", "audio/wav")),
        ("files", ("good2.flac", encode(tone(1.2), SR, "FLAC", None), "audio/flac")),
    ]
    r = client.post("/v1/predict/batch", files=files)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["ok"] for x in results] == [True, False, False, True]
    assert [x["status"] for x in results] == [200, 415, 400, 200]
    assert results[1]["error"]["error"] == "unsupported_media" and "text.wav" in results[1]["error"]["detail"]
    assert results[3]["result"]["duration_s"] == pytest.approx(1.2)


def test_model_card_health_ready_docs(v1: str, client: TestClient) -> None:
    card = client.get("/v1/model").json()
    assert card["classes"] == CLASSES and card["version"] == v1 and card["window_s"] == 1.0
    assert client.get("/health").json()["status"] == "alive"
    assert client.get("/ready").json() == {"status": "ready", "model_version": v1}
    schema = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/predict/batch", "/v1/model", "/health", "/ready"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "vocalis" in page.text
    assert client.get("/static/app.js").status_code == 200


def test_ready_is_503_before_the_model_is_loaded(app_settings: Settings) -> None:
    app = create_app(app_settings)
    client = TestClient(app)  # not entered: the lifespan (model loading) has not run
    r = client.get("/ready")
    assert r.status_code == 503 and r.json()["error"] == "not_ready"
    assert client.get("/health").status_code == 200


def test_a_missing_artifact_fails_start_up(tmp_path: Path) -> None:
    from vocalis.errors import ArtifactError

    app = create_app(Settings(model_dir=tmp_path / "nothing", database_url=f"sqlite:///{tmp_path}/x.db"))
    with pytest.raises(ArtifactError, match="nothing"), TestClient(app):
        pass


# ---------------------------------------------------------------------------------------- bad input


def _nan_wav() -> bytes:
    x = tone(1.0)
    x[100:200] = np.nan
    return encode(x, SR, subtype="FLOAT")


BAD_INPUTS = {
    "empty": (lambda wav: b"", {400}, "empty_file"),
    "truncated header": (lambda wav: wav[:30], {400, 415}, None),
    "text renamed .wav": (lambda wav: b"hello, I am a text file\n" * 20, {415}, "unsupported_media"),
    "NaN float wav": (lambda wav: _nan_wav(), {400}, "invalid_audio"),
    "header only, no samples": (lambda wav: encode(np.zeros((0, 1), np.float32), SR), {400}, "empty_audio"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_audio_is_a_4xx_json_error(client: TestClient, wav_bytes: bytes, case: str) -> None:
    make, statuses, kind = BAD_INPUTS[case]
    r = post(client, make(wav_bytes), "bad.wav")
    assert r.status_code in statuses, r.text
    body = r.json()
    assert set(body) >= {"error", "detail"} and "bad.wav" in str(body["detail"])
    if kind:
        assert body["error"] == kind
    assert client.get("/health").status_code == 200  # the worker is still alive


def test_truncated_data_chunk_still_decodes_what_is_there(client: TestClient, wav_bytes: bytes) -> None:
    cut = wav_bytes[: len(wav_bytes) // 2]
    r = post(client, cut, "cut.wav")
    assert r.status_code == 200, r.text
    # the header promises 2.5 s; the frames present (16-bit mono after the 44-byte header) are what counts
    present_s = (len(cut) - 44) // 2 / SR
    assert r.json()["duration_s"] == pytest.approx(present_s, abs=1 / SR)
    assert r.json()["detections"][-1]["end_s"] == pytest.approx(present_s, abs=1 / SR)


@pytest.mark.parametrize(
    ("seconds", "sr"),
    [(0.033, SR), (0.033, 44_100), (1 / 44_100, 44_100)],
    ids=["33 ms click", "33 ms at 44.1 kHz", "one sample"],
)
def test_audio_shorter_than_a_window_is_padded_not_refused(
    client: TestClient, seconds: float, sr: int
) -> None:
    """The short-audio rule: only audio with no samples is refused; a real 33 ms click is classified."""
    frames = max(1, round(seconds * sr))
    r = post(client, encode(tone(frames / sr, sr=sr), sr), "click.wav")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["duration_s"] == pytest.approx(frames / sr, abs=1e-6)
    (only,) = body["detections"]  # one window, zero-padded to the model's 1 s
    assert only["start_s"] == 0.0 and only["label"] in CLASSES


def test_odd_but_valid_audio_is_accepted(client: TestClient) -> None:
    # 500 kHz (ultrasonic recorders) and 8 channels (hydrophone arrays) are real formats: decoded, resampled,
    # downmixed
    r = post(client, encode(tone(1.5, sr=500_000, freq=3000.0), 500_000), "bat.wav")
    assert r.status_code == 200, r.text
    assert r.json()["sample_rate"] == 500_000 and r.json()["duration_s"] == pytest.approx(1.5)
    r = post(client, encode(tone(1.5, channels=8), SR), "array.wav")
    assert r.status_code == 200, r.text
    assert r.json()["channels"] == 8


@pytest.mark.parametrize(
    ("fmt", "subtype"), [("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III"), ("FLAC", "PCM_24"), ("WAV", "ULAW")]
)
def test_compressed_formats_are_accepted(client: TestClient, fmt: str, subtype: str) -> None:
    r = post(client, encode(tone(2.0, sr=44_100), 44_100, fmt, subtype), f"call.{fmt.lower()}")
    assert r.status_code == 200, r.text
    # MP3 encoders pad the stream: the duration is right to within one MP3 frame (1152 samples, 26 ms)
    assert r.json()["duration_s"] == pytest.approx(2.0, abs=0.03)
    assert r.json()["sample_rate"] == 44_100


@pytest.mark.parametrize(
    "form",
    [
        {"top_k": 0},
        {"top_k": "many"},
        {"min_conf": 1.5},
        {"min_conf": "nan"},
        {"window": -1},
        {"hop": 0},
        {"hop": "inf"},
        {"window": 2.0},
        {"site": "x" * 300},
    ],
)
def test_invalid_options_are_422(client: TestClient, wav_bytes: bytes, form: dict[str, Any]) -> None:
    r = post(client, wav_bytes, **form)
    assert r.status_code == 422, r.text
    assert r.json()["error"] in ("invalid_request", "invalid_option")


def test_no_file_is_422(client: TestClient) -> None:
    r = client.post("/v1/predict", data={"top_k": 3})
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"
    r = client.post("/v1/predict", content=b"raw body", headers={"content-type": "audio/wav"})
    assert r.status_code == 422


def test_oversize_upload_is_413_up_front_and_while_streaming(artifact_dir: Path, tmp_path: Path) -> None:
    settings = Settings(
        model_dir=artifact_dir, database_url=f"sqlite:///{tmp_path}/l.db", max_upload_bytes=100_000
    )
    big = encode(tone(5.0), SR)  # 160 kB
    with TestClient(create_app(settings)) as client:
        r = post(client, big)  # Content-Length says it all
        assert r.status_code == 413 and r.json()["error"] == "payload_too_large"

        # no Content-Length (chunked): refused once the count passes the limit
        chunked = (b"\0" * 10_000 for _ in range(100))
        r = client.post(
            "/v1/predict", content=chunked, headers={"content-type": "multipart/form-data; boundary=xyz"}
        )
        assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
        assert post(client, encode(tone(1.0), SR)).status_code == 200


def test_the_size_limit_stops_reading_the_stream(artifact_dir: Path, tmp_path: Path) -> None:
    """At the ASGI level: the app stops pulling body chunks right after the limit (nothing buffered)."""
    import anyio

    settings = Settings(
        model_dir=artifact_dir, database_url=f"sqlite:///{tmp_path}/l.db", max_upload_bytes=100_000
    )
    app = create_app(settings)
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        head = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        return {"type": "http.request", "body": head if pulled == 1 else b"\1" * 10_000, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/predict",
        "raw_path": b"/v1/predict",
        "query_string": b"",
        "headers": [(b"content-type", b"multipart/form-data; boundary=xyz")],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("test", 80),
        "client": ("test", 1),
        "root_path": "",
        "app": app,
    }
    with TestClient(app):  # runs the lifespan (model loaded) in the client's portal
        anyio.run(app, scope, receive, send)
    assert sent[0]["status"] == 413
    assert pulled <= 12  # 100 kB limit in 10 kB chunks: stopped at the first chunk past it


def test_audio_longer_than_the_limit_is_413(artifact_dir: Path, tmp_path: Path) -> None:
    settings = Settings(model_dir=artifact_dir, database_url=f"sqlite:///{tmp_path}/l.db", max_duration_s=2.0)
    with TestClient(create_app(settings)) as client:
        r = post(client, encode(tone(3.0), SR), "long.wav")
        assert (
            r.status_code == 413
            and r.json()["error"] == "audio_too_long"
            and "long.wav" in r.json()["detail"]
        )


# ------------------------------------------------------------------------------------- log and metrics


def test_every_prediction_is_logged_with_drift_features(
    v1: str, client: TestClient, app_settings: Settings, wav_bytes: bytes
) -> None:
    ids = [post(client, wav_bytes, site="reef-1", device="h7").json()["request_id"] for _ in range(3)]
    post(client, b"", "empty.wav")  # refused: not logged
    store = PredictionStore(app_settings.database_url)
    rows = store.rows()
    assert [r["request_id"] for r in rows] == ids
    row = rows[0]
    assert row["model_version"] == v1 and row["site"] == "reef-1" and row["device"] == "h7"
    assert (row["sample_rate"], row["channels"], row["duration_s"]) == (SR, 1, 2.5)
    assert row["top_label"] in CLASSES and set(row["probabilities"]) == set(CLASSES)
    # a 1 kHz tone at amplitude 0.3: RMS -13.5 dBFS, peak and centroid near 1 kHz (tolerance: one FFT bin
    # of 7.8 Hz for the peak; the noise floor pulls the centroid up a little)
    assert row["rms_dbfs"] == pytest.approx(-13.5, abs=0.3)
    assert row["peak_frequency_hz"] == pytest.approx(1000, abs=8)
    assert 950 < row["spectral_centroid_hz"] < 1300
    assert row["zero_crossing_rate"] == pytest.approx(2 * 1000 / SR, rel=0.1)
    assert row["latency_ms"] > 0
    store.close()


def test_log_export_cli_writes_parquet_and_csv(
    client: TestClient, app_settings: Settings, wav_bytes: bytes, tmp_path: Path
) -> None:
    import pandas as pd
    from typer.testing import CliRunner

    from vocalis.cli import app

    post(client, wav_bytes)
    post(client, wav_bytes)
    for suffix in ("parquet", "csv"):
        out = tmp_path / f"log.{suffix}"
        res = CliRunner().invoke(
            app,
            ["log", "export", "-o", str(out), "--since", "1h", "--database-url", app_settings.database_url],
        )
        assert res.exit_code == 0, res.output
        frame = pd.read_parquet(out) if suffix == "parquet" else pd.read_csv(out)
        assert len(frame) == 2 and {"request_id", "rms_dbfs", "probabilities", "top_label"} <= set(
            frame.columns
        )
    res = CliRunner().invoke(
        app,
        [
            "log",
            "export",
            "-o",
            str(tmp_path / "f.parquet"),
            "--since",
            "2999-01-01",
            "--database-url",
            app_settings.database_url,
        ],
    )
    assert res.exit_code == 0 and pd.read_parquet(tmp_path / "f.parquet").empty


def test_uploads_are_stored_only_when_asked(artifact_dir: Path, tmp_path: Path, wav_bytes: bytes) -> None:
    uploads = tmp_path / "uploads"
    settings = Settings(model_dir=artifact_dir, database_url=f"sqlite:///{tmp_path}/l.db", upload_dir=uploads)
    with TestClient(create_app(settings)) as client:
        rid = post(client, wav_bytes, "../../etc/evil name.wav").json()["request_id"]
    stored = list(uploads.rglob("*"))
    files = [p for p in stored if p.is_file()]
    assert len(files) == 1 and files[0].read_bytes() == wav_bytes
    assert rid in files[0].name and uploads in files[0].parents  # the client's path is not followed
    assert PredictionStore(settings.database_url).rows()[0]["upload_path"] == str(files[0])


def test_metrics_parse_and_count_what_was_sent(v1: str, client: TestClient, wav_bytes: bytes) -> None:
    for _ in range(3):
        post(client, wav_bytes)
    post(client, b"", "e.wav")
    post(client, b"junk", "j.wav")
    text = client.get("/metrics").text
    values = metric_values(text)  # parses as Prometheus text
    req = "vocalis_requests_total"
    assert values[(req, (("endpoint", "/v1/predict"), ("method", "POST"), ("status", "200")))] == 3
    assert values[(req, (("endpoint", "/v1/predict"), ("method", "POST"), ("status", "400")))] == 1
    assert values[(req, (("endpoint", "/v1/predict"), ("method", "POST"), ("status", "415")))] == 1
    assert values[("vocalis_audio_seconds_processed_total", ())] == pytest.approx(7.5)
    assert sum(v for (n, _), v in values.items() if n == "vocalis_predictions_total") == 3
    assert values[("vocalis_errors_total", (("kind", "empty_file"),))] == 1
    assert values[("vocalis_errors_total", (("kind", "unsupported_media"),))] == 1
    assert values[("vocalis_inference_latency_seconds_count", ())] == 3
    assert values[("vocalis_request_latency_seconds_count", (("endpoint", "/v1/predict"),))] == 5
    info = next(k for k in values if k[0] == "vocalis_model_info")
    assert ("version", v1) in info[1] and ("classes", ",".join(CLASSES)) in info[1]
    assert values[("vocalis_in_flight_requests", ())] == 1  # the /metrics request itself


def test_log_lines_carry_the_request_id(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="vocalis"):
        client.post("/v1/predict", files={"file": ("e.wav", b"")}, headers={"X-Request-ID": "trace-42"})
    mine = [r for r in caplog.records if getattr(r, "request_id", None) == "trace-42"]
    assert mine and any("400" in r.getMessage() for r in mine)


# --------------------------------------------------------------------------------------- security


def test_admin_reload_needs_the_token(v1: str, client: TestClient) -> None:
    assert client.post("/v1/admin/reload").status_code == 401
    assert client.post("/v1/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.post("/v1/admin/reload", headers={"Authorization": "Basic s3cret"}).status_code == 401
    r = client.post("/v1/admin/reload", headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200 and r.json()["model_version"] == v1


def test_admin_is_disabled_without_a_token(artifact_dir: Path, tmp_path: Path) -> None:
    settings = Settings(model_dir=artifact_dir, database_url=f"sqlite:///{tmp_path}/l.db", admin_token="")
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/admin/reload", headers={"Authorization": "Bearer "})
        assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_cors_is_off_unless_configured(artifact_dir: Path, tmp_path: Path) -> None:
    headers = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
    with TestClient(
        create_app(Settings(model_dir=artifact_dir, database_url=f"sqlite:///{tmp_path}/a.db"))
    ) as c:
        assert "access-control-allow-origin" not in c.options("/v1/predict", headers=headers).headers
    settings = Settings(
        model_dir=artifact_dir,
        database_url=f"sqlite:///{tmp_path}/b.db",
        cors_origins=["https://example.org"],
    )
    with TestClient(create_app(settings)) as c:
        r = c.options("/v1/predict", headers=headers)
        assert r.headers["access-control-allow-origin"] == "https://example.org"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VOCALIS_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("VOCALIS_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("VOCALIS_CORS_ORIGINS", '["http://a", "http://b"]')
    monkeypatch.setenv("VOCALIS_ADMIN_TOKEN", "sup3r-secret-value")
    s = Settings()
    assert (
        s.model_dir == tmp_path and s.max_upload_bytes == 1234 and s.cors_origins == ["http://a", "http://b"]
    )
    assert s.admin_token is not None and s.admin_token.get_secret_value() == "sup3r-secret-value"
    assert "sup3r-secret-value" not in repr(s)


def test_the_service_never_imports_torch(artifact_dir: Path, tmp_path: Path, wav_bytes: bytes) -> None:
    audio = tmp_path / "a.wav"
    audio.write_bytes(wav_bytes)
    code = f"""
import sys
from fastapi.testclient import TestClient
import vocalis.cli
from vocalis.serving.app import create_app
from vocalis.serving.settings import Settings
s = Settings(model_dir={str(artifact_dir)!r}, database_url="sqlite:///{tmp_path}/t.db")
with TestClient(create_app(s)) as c:
    r = c.post("/v1/predict", files={{"file": ("a.wav", open({str(audio)!r}, "rb").read())}})
    assert r.status_code == 200, r.text
heavy = sorted(m for m in ("torch", "lightning", "onnx", "hydra") if m in sys.modules)
print("HEAVY", heavy)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout, out.stdout
