"""Pydantic models of the parts of the Google Cloud specs that vocalis uses: a Cloud Run service
(Knative serving.knative.dev/v1) and a Vertex AI CustomJobSpec. Unknown keys are refused (extra="forbid"), so
a misspelt field fails validation instead of being silently dropped by the cloud API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """Refuse unknown keys, accept the camelCase names of the specs."""

    model_config = ConfigDict(extra="forbid")


class SecretKeyRef(Strict):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,255}$")
    key: str


class ValueFrom(Strict):
    secretKeyRef: SecretKeyRef


class EnvVar(Strict):
    name: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")
    value: str | None = None
    valueFrom: ValueFrom | None = None


class HttpGet(Strict):
    path: str = Field(pattern=r"^/")
    port: int = Field(gt=0, lt=65536)


class Probe(Strict):
    httpGet: HttpGet
    initialDelaySeconds: int = Field(default=0, ge=0, le=240)
    periodSeconds: int = Field(default=10, ge=1, le=3600)
    timeoutSeconds: int = Field(default=1, ge=1, le=3600)
    failureThreshold: int = Field(default=3, ge=1)


class Port(Strict):
    name: Literal["http1", "h2c"]
    containerPort: int = Field(gt=0, lt=65536)


class Resources(Strict):
    limits: dict[Literal["cpu", "memory", "nvidia.com/gpu"], str]


class VolumeMount(Strict):
    name: str
    mountPath: str = Field(pattern=r"^/")
    readOnly: bool = False


class Container(Strict):
    name: str
    image: str
    ports: list[Port] = Field(max_length=1)
    env: list[EnvVar] = []
    resources: Resources
    startupProbe: Probe
    livenessProbe: Probe
    volumeMounts: list[VolumeMount] = []


class Csi(Strict):
    driver: Literal["gcsfuse.run.googleapis.com"]
    readOnly: bool
    volumeAttributes: dict[str, str]


class Volume(Strict):
    name: str
    csi: Csi


class RevisionSpec(Strict):
    serviceAccountName: str
    containerConcurrency: int = Field(ge=1, le=1000)
    timeoutSeconds: int = Field(ge=1, le=3600)
    containers: list[Container] = Field(min_length=1, max_length=10)
    volumes: list[Volume] = []


class Metadata(Strict):
    name: str | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class Template(Strict):
    metadata: Metadata
    spec: RevisionSpec


class Traffic(Strict):
    percent: int = Field(ge=0, le=100)
    latestRevision: bool


class ServiceSpec(Strict):
    template: Template
    traffic: list[Traffic]


class CloudRunService(Strict):
    apiVersion: Literal["serving.knative.dev/v1"]
    kind: Literal["Service"]
    metadata: Metadata
    spec: ServiceSpec


class MachineSpec(Strict):
    machineType: str
    acceleratorType: Literal[
        "NVIDIA_TESLA_T4", "NVIDIA_TESLA_V100", "NVIDIA_TESLA_P100", "NVIDIA_L4", "NVIDIA_TESLA_A100"
    ]
    acceleratorCount: int = Field(ge=1)


class DiskSpec(Strict):
    bootDiskType: Literal["pd-ssd", "pd-standard"]
    bootDiskSizeGb: int = Field(ge=100, le=64000)


class ContainerSpec(Strict):
    imageUri: str
    command: list[str] = []
    args: list[str] = []
    env: list[EnvVar] = []


class WorkerPoolSpec(Strict):
    machineSpec: MachineSpec
    replicaCount: int = Field(ge=1)
    diskSpec: DiskSpec
    containerSpec: ContainerSpec


class Scheduling(Strict):
    timeout: str = Field(pattern=r"^\d+s$")


class CustomJobSpec(Strict):
    workerPoolSpecs: list[WorkerPoolSpec] = Field(min_length=1, max_length=4)
    scheduling: Scheduling | None = None
