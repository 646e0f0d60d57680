"""The loop on a real MLflow SQLite store: register, list/show, staging, the gate, production, pyfunc,
serving by alias, and what bad input does. The tests share one store and build on each other's state
through module fixtures (registering and gating a model costs tens of seconds on a shared CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vocalis.errors import ArtifactError, ConfigError
from vocalis.registry.registry import Registry, RegistryError, VersionInfo

#: training two tiny models, creating the store's tables and the gate's runs take minutes on a shared CPU
pytestmark = pytest.mark.slow

NAME = "vocalis"
VOCALIS = [sys.executable, "-c", "import sys; from vocalis.cli import main; sys.argv[0] = 'vocalis'; main()"]


@pytest.fixture(scope="module")
def v1(store: str, good_artifact: Path) -> VersionInfo:
    return Registry(store).register(good_artifact, name=NAME)


@pytest.fixture(scope="module")
def production(store: str, v1: VersionInfo, model_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    """v1 promoted to staging, then to production through the gate (a first promotion)."""
    from vocalis.registry.promotion import promote

    promote(NAME, v1.version, "staging", tracking_uri=store)
    return promote(
        NAME,
        v1.version,
        "production",
        tracking_uri=store,
        report_dir=tmp_path_factory.mktemp("reports"),
        cache_dir=model_cache,
    )


@pytest.fixture(scope="module")
def v2(store: str, worse_artifact: Path, production: object) -> VersionInfo:
    return Registry(store).register(worse_artifact, name=NAME)


def test_register_tags_the_card_and_links_the_run(store: str, v1: VersionInfo, good_artifact: Path) -> None:
    card = json.loads((good_artifact / "model.json").read_text())
    assert v1.version == "1" and v1.status == "READY"
    assert v1.classes == card["classes"]
    assert v1.tags["vocalis.sample_rate"] == str(card["sample_rate"])
    assert v1.tags["vocalis.cache_hash"] == card["cache_hash"]
    assert v1.tags["vocalis.git_commit"] == card["git_commit"]
    assert v1.metrics["accuracy"] == pytest.approx(card["metrics"]["accuracy"], abs=1e-5)
    # the run that holds the model records the training run directory it came from
    run = Registry(store).client.get_run(v1.run_id)
    assert run.data.tags["vocalis.run_dir"] == card["source"]["run_dir"]


def test_list_and_show(store: str, v1: VersionInfo) -> None:
    from vocalis.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["registry", "list", "--json", "--tracking-uri", store])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["version"]) for r in rows] == [(NAME, "1")]
    shown = runner.invoke(app, ["registry", "show", f"{NAME}/1", "--tracking-uri", store])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["tags"]["vocalis.card_version"] == v1.tags["vocalis.card_version"]


def test_first_promotion_runs_the_gate_on_the_candidates_test_split(store: str, production) -> None:
    assert production.promoted and not production.forced
    gate = production.gate
    assert gate.first_promotion and gate.production is None
    assert "first promotion" in production.report_md.read_text()
    report = json.loads(production.report_json.read_text())
    assert report["passed"] and report["decision"] == "promoted"
    assert report["eval_set"]["split"] == "test" and len(report["eval_set"]["hash"]) == 64
    registry = Registry(store)
    info = registry.get(f"{NAME}@production")
    assert info.version == "1" and set(info.aliases) == {"staging", "production"}
    assert info.tags["vocalis.gate.result"] == "pass"
    assert info.tags["vocalis.gate.eval_hash"] == report["eval_set"]["hash"]
    # the report is attached to the version's run
    folders = [a.path for a in registry.client.list_artifacts(info.run_id, "gate")]
    files = [a.path for a in registry.client.list_artifacts(info.run_id, folders[0])]
    assert {Path(f).suffix for f in files} == {".md", ".json"}


def test_pyfunc_predicts_from_an_audio_path_like_the_predictor(
    store: str, production, good_artifact: Path, trained_run: Path
) -> None:
    import mlflow

    from vocalis.inference import Predictor

    # a clip of the tiny set the session's run trained on (support.runs: <root>/calls/<class>/, run in
    # <root>/runs/<name>)
    clip = trained_run.parent.parent / "calls" / "beta" / "beta_7.wav"
    assert clip.is_file(), clip
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@production")
    out = model.predict([str(clip), str(good_artifact / "missing.wav")])
    expected = Predictor.from_dir(good_artifact).predict(clip)
    assert out.loc[0, "top_label"] == expected.summary.top_label == "beta"
    for c in expected.summary.max_probs:
        assert out.loc[0, f"max_prob.{c}"] == pytest.approx(expected.summary.max_probs[c], abs=1e-5)
    # one bad file is reported in its row and does not fail the batch
    assert out.loc[1, "error"] and np.isnan(out.loc[1, "top_confidence"])


def test_a_worse_candidate_is_refused_with_the_failing_checks_named(
    store: str, production, v2: VersionInfo, model_cache: Path, tmp_path: Path
) -> None:
    from vocalis.registry.promotion import promote

    result = promote(
        NAME, v2.version, "production", tracking_uri=store, report_dir=tmp_path, cache_dir=model_cache
    )
    assert not result.promoted
    failed = {c.name for c in result.gate.failed}
    assert {"accuracy", "macro_f1"} <= failed
    cand, prod = result.gate.candidate.metrics, result.gate.production.metrics
    assert cand["accuracy"] < prod["accuracy"] - 0.005
    # the same frozen windows for both: the set production was promoted on
    assert result.gate.eval_set["hash"] == production.gate.eval_set["hash"]
    assert cand["n_windows"] == prod["n_windows"] > 0
    registry = Registry(store)
    assert registry.get(f"{NAME}@production").version == "1"
    tags = registry.get(f"{NAME}/{v2.version}").tags
    assert tags["vocalis.gate.result"] == "fail" and "accuracy" in tags["vocalis.gate.failed"]
    assert json.loads(result.report_json.read_text())["decision"] == "refused"


def test_force_needs_a_reason_and_records_it(
    store: str, v2: VersionInfo, model_cache: Path, tmp_path: Path
) -> None:
    from vocalis.cli import app
    from vocalis.registry.promotion import promote

    with pytest.raises(ConfigError, match="--reason"):
        promote(NAME, v2.version, "production", tracking_uri=store, force=True)
    cli = CliRunner().invoke(
        app,
        ["registry", "promote", NAME, v2.version, "--to", "production", "--force", "--tracking-uri", store],
    )
    assert cli.exit_code != 0 and isinstance(cli.exception, ConfigError)
    assert Registry(store).get(f"{NAME}@production").version == "1"

    result = promote(
        NAME, v2.version, "staging", tracking_uri=store, force=True, reason="shadow test of a smaller model"
    )
    assert result.promoted
    tags = Registry(store).get(f"{NAME}@staging").tags
    assert tags["vocalis.force.reason"] == "shadow test of a smaller model" and tags["vocalis.force.by"]


def test_resolve_downloads_once_into_the_cache(store: str, production, model_cache: Path) -> None:
    from vocalis.registry.resolve import current_version, resolve_model

    first = resolve_model(f"models:/{NAME}@production", tracking_uri=store, cache_dir=model_cache)
    assert first.label == f"{NAME}/1" and (first.directory / "model.onnx").is_file()
    stamp = (first.directory / "model.onnx").stat().st_mtime_ns
    again = resolve_model(f"models:/{NAME}/1", tracking_uri=store, cache_dir=model_cache)
    assert again.directory == first.directory
    assert (again.directory / "model.onnx").stat().st_mtime_ns == stamp
    assert current_version(f"models:/{NAME}@production", tracking_uri=store) == "1"


def test_poll_interval_is_opt_in() -> None:
    from vocalis.registry.resolve import poll_interval

    assert poll_interval({}) is None and poll_interval({"VOCALIS_MODEL_POLL_S": "0"}) is None
    assert poll_interval({"VOCALIS_MODEL_POLL_S": "2.5"}) == 2.5
    with pytest.raises(ConfigError, match="VOCALIS_MODEL_POLL_S"):
        poll_interval({"VOCALIS_MODEL_POLL_S": "soon"})


def test_bad_input_fails_cleanly_and_registers_nothing(store: str, production, tmp_path: Path) -> None:
    registry = Registry(store)
    before = len(registry.versions(NAME))
    with pytest.raises(RegistryError, match="'nope' is not registered"):
        registry.get("nope@production")
    with pytest.raises(RegistryError, match="no alias 'canary'"):
        registry.get(f"{NAME}@canary")
    with pytest.raises(RegistryError, match="no version 99"):
        registry.get(f"{NAME}/99")
    (tmp_path / "not-a-model").mkdir()
    (tmp_path / "not-a-model" / "notes.txt").write_text("hello")
    with pytest.raises(ArtifactError, match="not a model artifact"):
        registry.register(tmp_path / "not-a-model", name=NAME)
    with pytest.raises(RegistryError, match="does not exist"):
        Registry(f"sqlite:///{tmp_path / 'no' / 'such' / 'mlflow.db'}")
    assert len(registry.versions(NAME)) == before


def test_unreachable_tracking_uri_is_one_line_and_non_zero(tmp_path: Path) -> None:
    from support.serving import free_port

    t0 = time.monotonic()
    proc = subprocess.run(
        [*VOCALIS, "registry", "list", "--tracking-uri", f"http://127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert proc.returncode == 2  # the CLI's exit code of a VocalisError (1 is a refused gate)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "cannot be reached" in lines[0], proc.stderr
    assert time.monotonic() - t0 < 240  # no minutes of retries


def test_serve_resolves_a_models_uri(store: str, production, good_artifact: Path, tmp_path: Path) -> None:
    import httpx

    from support.serving import free_port

    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": store,
        "VOCALIS_MODEL_CACHE": str(tmp_path / "cache"),
        "VOCALIS_DATABASE_URL": f"sqlite:///{tmp_path / 'log.db'}",
        "VOCALIS_THREADS": "1",
    }
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [*VOCALIS, "serve", "--model", f"models:/{NAME}@production", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 240  # MLflow's import and the download on a loaded machine
        model = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/v1/model", timeout=2)
                if r.status_code == 200:
                    model = r.json()
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert model is not None, (tmp_path / "serve.log").read_text()[-2000:]
        card = json.loads((good_artifact / "model.json").read_text())
        assert card["version"] in json.dumps(model)
        assert (tmp_path / "cache" / NAME / "1").is_dir()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
