"""Request options and response bodies of the HTTP API (pydantic), shown in the OpenAPI schema at /docs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from vocalis.contracts.card import ModelCard as ModelCard  # GET /v1/model answers the card


class ErrorBody(BaseModel):
    """Every refused request gets this body with a 4xx status."""

    error: str = Field(description="Machine-readable kind, e.g. 'payload_too_large', 'undecodable_audio'.")
    detail: Any = Field(description="What was wrong, naming the file or field and the reason.")
    request_id: str | None = Field(None, description="The request id (also in the X-Request-ID header).")


class LabelScore(BaseModel):
    """A class and its probability."""

    label: str
    confidence: float


class Detection(BaseModel):
    """The prediction for one analysis window."""

    start_s: float = Field(description="Window start in seconds from the start of the file.")
    end_s: float = Field(description="Window end in seconds.")
    label: str = Field(description="Most probable class in this window.")
    confidence: float = Field(description="Its probability.")
    top: list[LabelScore] = Field(description="The top_k classes of this window, most probable first.")


class Summary(BaseModel):
    """Per-file aggregate of the windows."""

    top_label: str
    top_confidence: float
    max_probs: dict[str, float] = Field(description="Per class, the highest window probability.")
    mean_probs: dict[str, float] = Field(description="Per class, the mean window probability.")


class FileResult(BaseModel):
    """The prediction for one uploaded file."""

    file: str | None = Field(description="The uploaded file's name.")
    duration_s: float
    sample_rate: int = Field(description="The file's own sample rate (before resampling).")
    channels: int
    detections: list[Detection] = Field(description="Windows, in time order (min_conf filters them).")
    summary: Summary


class PredictResponse(FileResult):
    """Response of POST /v1/predict."""

    request_id: str
    model_version: str
    processing_ms: float = Field(description="Server time spent on this request, in milliseconds.")


class BatchItem(BaseModel):
    """One file of a batch: a result or an error."""

    file: str | None
    ok: bool
    result: FileResult | None = None
    error: ErrorBody | None = None
    status: int = Field(description="The HTTP status this file would have had on its own.")


class BatchResponse(BaseModel):
    """Response of POST /v1/predict/batch."""

    request_id: str
    model_version: str
    processing_ms: float
    results: list[BatchItem]


class Health(BaseModel):
    """Liveness / readiness answer."""

    status: str
    model_version: str | None = None
