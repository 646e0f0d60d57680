"""Operations routes: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Response

from vocalis.serving.api_errors import ApiError
from vocalis.serving.schemas import Health
from vocalis.serving.state import LoadedPredictor, State

router = APIRouter(tags=["ops"])


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness: the process answers."""
    return Health(status="alive")


@router.get("/ready", response_model=Health)
async def ready(state: State, predictor: LoadedPredictor) -> Health:
    """Readiness: the model is loaded and the prediction log answers."""
    if state.store is None or not await anyio.to_thread.run_sync(state.store.ping):
        raise ApiError(503, "log_unavailable", "the prediction log does not answer or cannot be written")
    return Health(status="ready", model_version=predictor.version)


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(state: State) -> Response:
    """Prometheus metrics (text exposition format)."""
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
