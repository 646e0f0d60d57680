"""The drift router and gauges, mounted on a small FastAPI app over a real SQLite prediction log."""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from typer.testing import CliRunner

pytest.importorskip("evidently")

TOKEN = "s3cret"


def _require_admin(request: Request) -> None:
    # the shape of the service's own admin check: 401 without a bearer token, 403 with a wrong one
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise HTTPException(401, "admin endpoints need 'Authorization: Bearer <token>'")
    if given != TOKEN:
        raise HTTPException(403, "wrong admin token")


def _app(artifact: Path, url: str, **settings: Any) -> tuple[FastAPI, Any, Any]:
    from prometheus_client import CollectorRegistry

    from vocalis.monitoring.service import DriftMonitor, DriftSettings, drift_router
    from vocalis.serving.store import PredictionStore

    registry = CollectorRegistry()
    holder: dict[str, Any] = {}
    monitor = DriftMonitor(
        store=lambda: holder.get("store"),
        artifact_dir=lambda: artifact,
        registry=registry,
        settings=DriftSettings(**{"since": None, "last": 60, **settings}),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        holder["store"] = PredictionStore(url)
        monitor.start()
        try:
            yield
        finally:
            await monitor.stop()
            holder["store"].close()

    app = FastAPI(lifespan=lifespan)
    app.include_router(drift_router(monitor, require_admin=_require_admin))
    return app, monitor, registry


def _cli_summary(artifact: Path, url: str, tmp_path: Path) -> dict[str, Any]:
    from vocalis.cli import app

    js = tmp_path / "cli.json"
    res = CliRunner().invoke(
        app,
        ["monitor", "drift", "--model", str(artifact), "--database-url", url, "--last", "60",
         "-o", str(tmp_path / "r.html"), "--json", str(js)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return dict(json.loads(js.read_text()))


def test_endpoint_refuses_without_the_admin_token(monitored_artifact: Path, logs: dict[str, str]) -> None:
    app, _, _ = _app(monitored_artifact, logs["clean"])
    with TestClient(app) as client:
        assert client.get("/v1/monitoring/drift").status_code == 401
        wrong = client.get("/v1/monitoring/drift", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403


@pytest.mark.parametrize("log_name", ["clean", "noise+20dB"])
def test_endpoint_and_gauges_agree_with_the_cli(
    log_name: str, monitored_artifact: Path, logs: dict[str, str], tmp_path: Path
) -> None:
    cli = _cli_summary(monitored_artifact, logs[log_name], tmp_path)
    app, _, registry = _app(monitored_artifact, logs[log_name])
    with TestClient(app) as client:
        r = client.get("/v1/monitoring/drift", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["drift_detected"] is cli["drift_detected"] is (log_name != "clean")
    assert body["drift_share"] == cli["drift_share"]
    assert body["sample_sizes"] == cli["sample_sizes"]
    for a, b in zip(body["tests"], cli["tests"], strict=True):
        assert a["column"] == b["column"] and a["drifted"] == b["drifted"]
        assert a["p_value"] == pytest.approx(b["p_value"], rel=1e-9, abs=1e-12)
    assert registry.get_sample_value("vocalis_drift_share") == cli["drift_share"]
    assert registry.get_sample_value("vocalis_drift_detected") == float(cli["drift_detected"])
    assert registry.get_sample_value("vocalis_drift_current_samples") == 60


def test_background_task_updates_the_gauges(monitored_artifact: Path, logs: dict[str, str]) -> None:
    app, _, registry = _app(monitored_artifact, logs["lowpass4k"], interval_s=0.2)
    with TestClient(app):
        deadline = time.monotonic() + 120
        while registry.get_sample_value("vocalis_drift_last_run_timestamp_seconds") in (None, 0.0):
            assert time.monotonic() < deadline, "no drift run within 120 s"
            time.sleep(0.2)
    assert registry.get_sample_value("vocalis_drift_detected") == 1.0
    assert registry.get_sample_value("vocalis_drift_share") >= 0.5


def test_background_task_is_off_by_default(monitored_artifact: Path, logs: dict[str, str]) -> None:
    app, monitor, registry = _app(monitored_artifact, logs["clean"])
    with TestClient(app):
        assert monitor.start() is None
    assert registry.get_sample_value("vocalis_drift_last_run_timestamp_seconds") == 0.0
    assert math.isnan(registry.get_sample_value("vocalis_drift_share"))


def test_endpoint_explains_missing_data_and_reference(
    monitored_artifact: Path, logs: dict[str, str], tmp_path: Path
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    app, _, registry = _app(monitored_artifact, logs["clean"], last=10)
    with TestClient(app) as client:
        r = client.get("/v1/monitoring/drift", headers=auth)
        assert r.status_code == 409 and r.json()["error"] == "not_enough_data"
        assert "at least 30" in r.json()["detail"]
        bad = client.get("/v1/monitoring/drift", params={"since": "yesterday"}, headers=auth)
        assert bad.status_code == 422 and bad.json()["error"] == "invalid_option"
    assert math.isnan(registry.get_sample_value("vocalis_drift_share"))
    assert registry.get_sample_value("vocalis_drift_detected") == 0.0

    old = tmp_path / "old"
    shutil.copytree(monitored_artifact, old)
    (old / "reference.parquet").unlink()
    app, _, _ = _app(old, logs["clean"])
    with TestClient(app) as client:
        r = client.get("/v1/monitoring/drift", headers=auth)
    assert r.status_code == 409 and r.json()["error"] == "no_reference"
