"""compose.yaml runs the image the Dockerfile builds, with the model mounted where the image looks for it, the
prediction log in PostgreSQL, and Prometheus only on request (the monitoring profile)."""

from __future__ import annotations

import re

import pytest
import yaml

from support.lint_tools import REPO
from vocalis.serving.settings import Settings


def test_compose_wires_the_api_to_postgres_and_the_model_mount() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    api = services["api"]
    assert (REPO / api["build"]["context"] / api["build"]["dockerfile"]).is_file()
    # the PostgreSQL driver is in the image (the postgres extra) because the log URL is a psycopg one
    assert "postgres" in api["build"]["args"]["EXTRAS"].split()
    env = api["environment"]
    assert (
        "postgresql+psycopg://" in env["VOCALIS_DATABASE_URL"] and "@db:5432/" in env["VOCALIS_DATABASE_URL"]
    )
    known = {f"VOCALIS_{name.upper()}" for name in Settings.model_fields} | {"VOCALIS_MODEL"}
    assert set(env) <= known
    # SOURCE:TARGET[:MODE], where SOURCE may hold ${VAR:-default}: split from the right
    model_mounts = [v for v in api["volumes"] if v.rsplit(":", 2)[1] == env["VOCALIS_MODEL"]]
    assert len(model_mounts) == 1 and model_mounts[0].endswith(":ro")
    assert api["depends_on"]["db"]["condition"] == "service_healthy"
    assert "healthcheck" in services["db"]
    # the image's default model path is the one compose mounts
    dockerfile = (REPO / "docker" / "api.Dockerfile").read_text()
    assert re.search(rf"VOCALIS_MODEL={re.escape(env['VOCALIS_MODEL'])}\b", dockerfile)


def test_prometheus_is_an_opt_in_profile() -> None:
    services = yaml.safe_load((REPO / "compose.yaml").read_text())["services"]
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert all("profiles" not in s for name, s in services.items() if name != "prometheus")


def test_dockerignore_keeps_data_runs_and_the_environment_out() -> None:
    # gitignore matching stands in for Docker's here: the file only uses patterns both read alike
    pathspec = pytest.importorskip("pathspec")
    lines = (REPO / ".dockerignore").read_text().splitlines()
    ignored = pathspec.PathSpec.from_lines("gitwildmatch", lines)
    for path in (
        "data/synthetic/a.wav",
        "runs/demo/x.ckpt",
        "artifacts/demo/model.onnx",
        ".venv/bin/python",
        ".git/HEAD",
        "mlflow.db",
        "tests/conftest.py",
    ):
        assert ignored.match_file(path), path
    for path in ("pyproject.toml", "uv.lock", "src/vocalis/cli/__init__.py"):
        assert not ignored.match_file(path), path
