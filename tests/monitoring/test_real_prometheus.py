"""A real Prometheus scrapes a real service process and evaluates the repository's alert rules: the drift
alert fires for shifted traffic and stays silent for in-distribution traffic (asked through Prometheus'
own HTTP API)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.serving import VOCALIS

PROMETHEUS = shutil.which("prometheus")
RULES = Path(__file__).resolve().parents[2] / "monitoring" / "prometheus" / "alerts.yml"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (apt-get install -y prometheus)"),
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


#: the logged traffic each test watches (keys of the ``logs`` fixture)
SHIFTED, CLEAN = "noise+20dB", "clean"


@pytest.fixture(scope="module")
def stacks(
    monitored_artifact: Path, logs: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Two stacks, one per watched log (shifted and in-distribution traffic), each a service with its drift
    task on and a Prometheus scraping it every second; yields each log's Prometheus URL.

    Both are started at once, so their start-ups and the real-time waits of the two tests (scrapes, the
    drift runs, the alert's hold) overlap instead of adding up."""
    procs: list[subprocess.Popen[bytes]] = []
    ports = {name: (_port(), _port()) for name in (SHIFTED, CLEAN)}
    try:
        for name, (port, _) in ports.items():
            # the real `vocalis serve`, its drift task on (every second, over the last 60 predictions)
            env = {
                **os.environ,
                "VOCALIS_DATABASE_URL": logs[name],
                "VOCALIS_THREADS": "1",
                "VOCALIS_DRIFT_INTERVAL_S": "1",
                "VOCALIS_DRIFT_SINCE": "",
                "VOCALIS_DRIFT_LAST": "60",
            }
            serve = [*VOCALIS, "serve", "--model", str(monitored_artifact), "--port", str(port)]
            procs.append(subprocess.Popen(serve, env=env))
        # the repository's rules, with the drift alert's hold shortened from minutes to seconds
        rules = yaml.safe_load(RULES.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == "VocalisDriftDetected":
                    rule["for"] = "3s"
        for name, (port, prom_port) in ports.items():
            _wait(lambda port=port: _get(f"http://127.0.0.1:{port}/ready"), 120, f"the service of {name}")
            tmp = tmp_path_factory.mktemp("prometheus")
            (tmp / "alerts.yml").write_text(yaml.safe_dump(rules))
            config = {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(tmp / "alerts.yml")],
                "scrape_configs": [
                    {"job_name": "vocalis", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                ],
            }
            (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
            assert PROMETHEUS is not None
            procs.append(
                subprocess.Popen(
                    [
                        PROMETHEUS,
                        f"--config.file={tmp / 'prometheus.yml'}",
                        f"--storage.tsdb.path={tmp / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{prom_port}",
                        "--log.level=warn",
                    ],
                )
            )
        yield {name: f"http://127.0.0.1:{prom_port}" for name, (_, prom_port) in ports.items()}
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def _drift_alert_state(prom: str) -> str | None:
    alerts = _get(f"{prom}/api/v1/alerts")["data"]["alerts"]
    states = [a["state"] for a in alerts if a["labels"].get("alertname") == "VocalisDriftDetected"]
    return states[0] if states else None


def _query(prom: str, q: str) -> list[dict[str, Any]]:
    return list(_get(f"{prom}/api/v1/query?query={urllib.parse.quote(q)}")["data"]["result"])


def test_drift_alert_fires_for_shifted_traffic(stacks: dict[str, str]) -> None:
    prom = stacks[SHIFTED]
    _wait(lambda: _drift_alert_state(prom) == "firing", 180, "VocalisDriftDetected to fire")
    share = _query(prom, "vocalis_drift_share")
    assert float(share[0]["value"][1]) >= 0.5


def test_drift_alert_stays_silent_for_in_distribution_traffic(stacks: dict[str, str]) -> None:
    prom = stacks[CLEAN]
    # wait until Prometheus holds five scrapes of finished drift runs (the gauges read 0 samples until the
    # first run ends, which takes a while on a loaded machine), then for longer than the alert's hold
    _wait(
        lambda: _query(prom, "count_over_time((vocalis_drift_current_samples == 60)[1m:1s]) >= 5"),
        180,
        "five scrapes of finished drift runs over the last 60 predictions",
    )
    time.sleep(5)
    # over everything this Prometheus scraped (the module's stacks live minutes, well under the hour)
    assert _query(prom, "max_over_time(vocalis_drift_detected[1h])")[0]["value"][1] == "0"
    assert _drift_alert_state(prom) is None
