"""Response bodies of the HTTP API (pydantic), shown in the OpenAPI schema at /docs.

A file's result (:class:`FileResult` and its parts) is the shape shared with ``vocalis predict --format
json`` and the BentoML service, defined once in :mod:`vocalis.inference.file_result`; this module adds what
belongs to a request (its id, the model version, timing) and the service's other answers.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from vocalis.contracts.card import ModelCard as ModelCard  # GET /v1/model answers the card
from vocalis.inference.file_result import Detection, FileResult, LabelScore, Summary

__all__ = [
    "BatchItem",
    "BatchResponse",
    "Detection",
    "ErrorBody",
    "FileResult",
    "Health",
    "LabelScore",
    "ModelCard",
    "PredictResponse",
    "ReloadResult",
    "Summary",
]


class ErrorBody(BaseModel):
    """Every refused request gets this body with a 4xx status."""

    error: str = Field(
        description="Machine-readable kind, e.g. 'payload_too_large', 'unsupported_media', 'empty_audio'."
    )
    detail: Any = Field(description="What was wrong, naming the file or field and the reason.")
    request_id: str | None = Field(None, description="The request id (also in the X-Request-ID header).")


class PredictResponse(FileResult):
    """Response of POST /v1/predict: the file's result and the request's facts."""

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


class ReloadResult(BaseModel):
    """Answer of POST /v1/admin/reload."""

    status: str
    previous_version: str | None
    model_version: str
    previous_label: str | None = Field(None, description="The version served before, e.g. 'vocalis/2'.")
    model_label: str | None = Field(None, description="The version served now, e.g. 'vocalis/3'.")


class Health(BaseModel):
    """Liveness / readiness answer."""

    status: str
    model_version: str | None = None
