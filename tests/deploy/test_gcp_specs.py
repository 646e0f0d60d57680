"""The Google Cloud specs of deploy/gcp/ validate against models of their APIs and agree with the code:
probe paths the service answers, environment variables the service reads, secrets for the credentials, a
training experiment the Hydra configs define."""

from __future__ import annotations

import re

import pytest
import yaml

from support.gcp_specs import CloudRunService, CustomJobSpec
from support.lint_tools import REPO
from vocalis.serving.settings import Settings

GCP = REPO / "deploy" / "gcp"


@pytest.fixture(scope="module")
def service() -> CloudRunService:
    return CloudRunService.model_validate(yaml.safe_load((GCP / "service.yaml").read_text()))


def test_cloud_run_service_probes_hit_routes_the_app_serves(service: CloudRunService) -> None:
    from vocalis.serving.app import create_app

    container = service.spec.template.spec.containers[0]
    # the routes the app serves, as its OpenAPI schema lists them (routers included)
    routes = set(create_app(Settings(model_dir=REPO / "missing")).openapi()["paths"])
    assert container.startupProbe.httpGet.path == "/ready"
    assert container.livenessProbe.httpGet.path == "/health"
    assert {"/ready", "/health"} <= routes
    port = container.ports[0].containerPort
    assert container.startupProbe.httpGet.port == port == container.livenessProbe.httpGet.port
    # the image listens on $PORT, 8000 unless Cloud Run says otherwise
    assert f"EXPOSE {port}" in (REPO / "docker" / "api.Dockerfile").read_text()


def test_cloud_run_env_is_what_the_service_reads_and_credentials_come_from_secrets(
    service: CloudRunService,
) -> None:
    env = {e.name: e for e in service.spec.template.spec.containers[0].env}
    known = {f"VOCALIS_{name.upper()}" for name in Settings.model_fields} | {"VOCALIS_MODEL"}
    assert set(env) <= known, set(env) - known
    for secret in ("VOCALIS_DATABASE_URL", "VOCALIS_ADMIN_TOKEN"):
        assert env[secret].value is None and env[secret].valueFrom is not None, secret
    # the model is the read-only bucket mount
    mounts = {m.mountPath: m for m in service.spec.template.spec.containers[0].volumeMounts}
    assert env["VOCALIS_MODEL"].value is not None
    assert any(env["VOCALIS_MODEL"].value.startswith(path + "/") and m.readOnly for path, m in mounts.items())


def test_cloud_run_sizing_keeps_one_prediction_per_core(service: CloudRunService) -> None:
    spec = service.spec.template.spec
    env = {e.name: e.value for e in spec.containers[0].env}
    cpus = int(spec.containers[0].resources.limits["cpu"])
    predictions = int(env["VOCALIS_INFERENCE_CONCURRENCY"] or 0)
    threads = int(env["VOCALIS_THREADS"] or 0)
    # one single-threaded prediction per core (docs/benchmarks.md); requests beyond them queue in the instance
    assert predictions * threads == cpus
    assert predictions <= spec.containerConcurrency
    annotations = service.spec.template.metadata.annotations
    assert (
        1
        <= int(annotations["autoscaling.knative.dev/minScale"])
        <= int(annotations["autoscaling.knative.dev/maxScale"])
    )


def test_cloudbuild_fills_every_placeholder_of_the_service_spec() -> None:
    placeholders = set(re.findall(r"__[A-Z_]+__", (GCP / "service.yaml").read_text()))
    build = yaml.safe_load((GCP / "cloudbuild.yaml").read_text())
    render = next(step for step in build["steps"] if step["id"] == "render-service")
    filled = set(re.findall(r"s#(__[A-Z_]+__)#", " ".join(render["args"])))
    assert placeholders == filled
    ids = [step["id"] for step in build["steps"]]
    assert ids.index("build") < ids.index("push") < ids.index("deploy")
    # the image built is the one api.Dockerfile describes
    assert "--file=docker/api.Dockerfile" in build["steps"][0]["args"]


def test_vertex_job_trains_a_defined_experiment_on_one_gpu() -> None:
    job = CustomJobSpec.model_validate(yaml.safe_load((GCP / "vertex-train-job.yaml").read_text()))
    pool = job.workerPoolSpecs[0]
    assert pool.machineSpec.acceleratorCount == 1 and pool.replicaCount == 1
    assert "/vocalis-train-gpu:" in pool.containerSpec.imageUri
    args = pool.containerSpec.args
    assert args[0] == "train" and "experiment=wmms_resnet34" in args
    configs = REPO / "src" / "vocalis" / "configs"
    for arg in args[1:]:
        group, _, value = arg.partition("=")
        if (configs / group).is_dir():
            assert (configs / group / f"{value}.yaml").is_file(), arg


def test_vertex_job_overrides_compose_into_a_training_config() -> None:
    pytest.importorskip("hydra")
    from vocalis.training.config import compose_config

    job = CustomJobSpec.model_validate(yaml.safe_load((GCP / "vertex-train-job.yaml").read_text()))
    cfg = compose_config(job.workerPoolSpecs[0].containerSpec.args[1:])
    assert cfg.model._target_ == "vocalis.models.resnet34"
    assert cfg.trainer.accelerator == "gpu"
    assert cfg.data.local_dir.startswith("/gcs/")


def test_a_misspelt_field_fails_validation() -> None:
    doc = yaml.safe_load((GCP / "service.yaml").read_text())
    doc["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = doc["spec"]["template"]["spec"][
        "containers"
    ][0].pop("livenessProbe")
    with pytest.raises(ValueError, match="livenessProbe"):
        CloudRunService.model_validate(doc)
