"""The alert rules and scrape config, checked and unit-tested by Prometheus' own promtool."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

PROM_DIR = Path(__file__).resolve().parents[2] / "monitoring" / "prometheus"
DASHBOARD = Path(__file__).resolve().parents[2] / "monitoring" / "grafana" / "vocalis.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian: apt-get install -y prometheus)"
)


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=PROM_DIR, capture_output=True, text=True, timeout=120, check=False
    )


@needs_promtool
def test_alert_rules_are_valid() -> None:
    res = _promtool("check", "rules", "alerts.yml")
    assert res.returncode == 0, res.stdout + res.stderr


@needs_promtool
def test_scrape_config_is_valid() -> None:
    res = _promtool("check", "config", "prometheus.yml")
    assert res.returncode == 0, res.stdout + res.stderr


@needs_promtool
def test_alert_rule_unit_tests_pass() -> None:
    res = _promtool("test", "rules", "alerts_test.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout + res.stderr


@needs_promtool
def test_every_alert_has_a_unit_test() -> None:
    import yaml

    rules = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((PROM_DIR / "alerts_test.yml").read_text())
    checks = [t for case in tests["tests"] for t in case.get("alert_rule_test", [])]
    tested = {t["alertname"] for t in checks if t.get("exp_alerts")}
    assert alerts == tested, f"alerts without a firing test: {sorted(alerts - tested)}"


def test_dashboard_queries_the_service_metrics() -> None:
    board = json.loads(DASHBOARD.read_text())
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p.get("targets", []))
    for metric in (
        "vocalis_requests_total",
        "vocalis_request_latency_seconds_bucket",
        "vocalis_predictions_total",
        "vocalis_drift_share",
        "vocalis_drift_detected",
    ):
        assert metric in exprs, metric
