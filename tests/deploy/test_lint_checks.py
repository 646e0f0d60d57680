"""The delivery files pass the checks of `make lint`, and those checks can fail: a broken Dockerfile or
workflow in a temporary copy is refused, naming the file and the rule."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml

from support.lint_tools import REPO, run_tool

DOCKERFILES = sorted((REPO / "docker").glob("*.Dockerfile"))
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def test_the_delivery_files_exist() -> None:
    assert {p.name for p in DOCKERFILES} == {"api.Dockerfile", "train.Dockerfile", "train-gpu.Dockerfile"}
    assert {p.stem for p in WORKFLOWS} >= {"tests", "lint", "docs", "images", "data"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_are_hadolint_clean(dockerfile: Path) -> None:
    result = run_tool("hadolint", dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_refuses_a_broken_dockerfile(tmp_path: Path) -> None:
    # the API Dockerfile with three classic mistakes: a floating tag, `cd` in RUN, apt without cleanup
    text = (REPO / "docker" / "api.Dockerfile").read_text()
    broken = tmp_path / "api.Dockerfile"
    broken.write_text(
        text.replace("ARG BASE_IMAGE=python:3.11-slim", "ARG BASE_IMAGE=python:3.11-slim\nFROM ubuntu")
        + "\nRUN cd /tmp && apt-get install curl\n"
    )
    result = run_tool("hadolint", broken)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "api.Dockerfile" in out
    # DL3006: untagged image; DL3003: cd instead of WORKDIR; DL3014: apt-get install without -y
    for code in ("DL3006", "DL3003", "DL3014"):
        assert code in out, code


def test_workflows_pass_actionlint_and_the_schema() -> None:
    lint = run_tool("actionlint", *WORKFLOWS)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    schema = run_tool("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *WORKFLOWS)
    assert schema.returncode == 0, schema.stdout + schema.stderr


def _copy_workflows(tmp_path: Path) -> Path:
    """A repository-like copy holding only .github/workflows (actionlint finds the project by it)."""
    dest = tmp_path / ".github" / "workflows"
    shutil.copytree(REPO / ".github" / "workflows", dest)
    return dest


def test_actionlint_refuses_a_broken_workflow(tmp_path: Path) -> None:
    workflows = _copy_workflows(tmp_path)
    tests = workflows / "tests.yml"
    # a reference to a matrix key that does not exist: valid YAML, valid schema, wrong workflow
    tests.write_text(tests.read_text().replace("${{ matrix.python }}", "${{ matrix.pyhton }}"))
    result = run_tool("actionlint", tests, cwd=tmp_path)
    assert result.returncode != 0
    assert "tests.yml" in result.stdout and "pyhton" in result.stdout


def test_the_schema_check_refuses_a_workflow_without_jobs(tmp_path: Path) -> None:
    workflows = _copy_workflows(tmp_path)
    lint = workflows / "lint.yml"
    doc = yaml.safe_load(lint.read_text())
    # PyYAML reads the key `on` as True; rename the jobs key instead
    doc["job"] = doc.pop("jobs")
    lint.write_text(yaml.safe_dump(doc))
    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.github-workflows", lint)
    assert result.returncode != 0
    assert "lint.yml" in result.stdout


def test_cloudbuild_passes_its_schema_and_a_broken_copy_does_not(tmp_path: Path) -> None:
    spec = REPO / "deploy" / "gcp" / "cloudbuild.yaml"
    ok = run_tool("check-jsonschema", "--builtin-schema", "vendor.cloudbuild", spec)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    doc = yaml.safe_load(spec.read_text())
    doc["steps"][0]["args"] = "build ."  # args must be a list of strings
    broken = tmp_path / "cloudbuild.yaml"
    broken.write_text(yaml.safe_dump(doc))
    bad = run_tool("check-jsonschema", "--builtin-schema", "vendor.cloudbuild", broken)
    assert bad.returncode != 0


def test_pre_commit_hooks_are_local_and_use_the_locked_tools() -> None:
    # offline in a fresh clone: no hook repository to fetch, every entry a tool of .venv
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    hooks = [h for repo in config["repos"] for h in repo["hooks"]]
    assert all(repo["repo"] == "local" for repo in config["repos"])
    assert {h["id"] for h in hooks} >= {"ruff-check", "ruff-format", "mypy", "hadolint", "actionlint"}
    for hook in hooks:
        exe = hook["entry"].split()[0]
        assert exe.startswith(".venv/bin/"), hook["id"]
        assert (Path(sys.executable).parent / Path(exe).name).exists(), exe
