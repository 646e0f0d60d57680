"""The inference service: a FastAPI app over :class:`vocalis.inference.Predictor`.

:func:`create_app` builds the app: the shared :class:`~vocalis.serving.state.ServiceState` (reached by the
routes through ``Depends``), the middleware, the error handlers and one router per concern
(:mod:`vocalis.serving.routes`: predict, model + admin, health + metrics, web page). The Predictor is loaded
once, in the lifespan, from the artifact directory named by the settings, and the prediction log is opened
(and migrated to the current schema) there too.

Bad input is answered with a 4xx JSON body ``{"error", "detail", "request_id"}``; nothing a client sends
should produce a 500. This module never imports torch.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vocalis.monitoring.service import DriftMonitor, drift_router
from vocalis.serving.api_errors import ApiError
from vocalis.serving.metrics import ServiceMetrics
from vocalis.serving.middleware import (
    BodySizeLimitMiddleware,
    RequestContextMiddleware,
    UploadGuardMiddleware,
)
from vocalis.serving.request_context import install_record_factory, request_id_var
from vocalis.serving.routes import health, model, predict, web
from vocalis.serving.schemas import ErrorBody
from vocalis.serving.settings import Settings, load_settings
from vocalis.serving.state import ServiceState, state_of

log = logging.getLogger(__name__)

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "Empty or invalid audio",
        413: "Upload, audio duration or number of windows over the limit",
        408: "The request body did not arrive in time",
        415: "Not a readable audio file",
        422: "Missing file or invalid option",
        503: "Model not loaded, prediction log unavailable, or too many uploads at once",
    }.items()
}

_STATUS_KINDS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media",
    422: "invalid_request",
    503: "unavailable",
}


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServiceState = app.state.vocalis
    await state.start()
    state.drift.start()  # periodic drift runs: off unless VOCALIS_DRIFT_INTERVAL_S is set
    state.start_polling()  # alias polling: off unless VOCALIS_MODEL_POLL_S is set with a models:/ URI
    assert state.predictor is not None
    log.info(
        "serving model %s (%d classes) from %s: %d prediction(s) at a time, %d ORT thread(s) each",
        state.model_label,
        len(state.predictor.classes),
        state.settings.model_dir,
        state.concurrency,
        state.threads,
    )
    try:
        yield
    finally:
        await state.stop_polling()
        await state.drift.stop()
        state.close()


def _error_response(request: Request, status: int, error: str, detail: Any) -> JSONResponse:
    state_of(request).metrics.errors.labels(error).inc()
    body = {"error": error, "detail": jsonable_encoder(detail), "request_id": request_id_var.get()}
    return JSONResponse(body, status_code=status)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _error_response(request, exc.status, exc.error, exc.detail)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()
    ]
    return _error_response(request, 422, "invalid_request", errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = _STATUS_KINDS.get(exc.status_code, f"http_{exc.status_code}")
    response = _error_response(request, exc.status_code, kind, exc.detail)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error: %s", exc)
    return _error_response(
        request, 500, "internal_error", "the server failed; see its log for this request id"
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service app. ``settings`` defaults to the environment (``VOCALIS_*``)."""
    settings = settings or Settings()
    install_record_factory()
    metrics = ServiceMetrics()
    app = FastAPI(
        title="vocalis",
        version=_package_version(),
        summary="Recognise animal species from their vocalizations.",
        lifespan=_lifespan,
        responses=_ERROR_RESPONSES,
    )
    state = ServiceState(settings, metrics)
    state.drift = DriftMonitor(
        store=lambda: state.store, artifact_dir=lambda: state.settings.model_dir, registry=metrics.registry
    )
    app.state.vocalis = state

    # middleware: the last added is the outermost. Request context wraps everything (so refused bodies
    # also carry a request id and count in the metrics); the size limit sits inside it.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID"],
        )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes, metrics=metrics)
    app.add_middleware(
        UploadGuardMiddleware,
        body_timeout_s=settings.body_timeout_s,
        max_uploads=settings.max_concurrent_uploads,
        metrics=metrics,
    )
    app.add_middleware(RequestContextMiddleware, metrics=metrics)

    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)

    app.include_router(web.router)
    app.mount("/static", web.static_files(), name="static")
    app.include_router(health.router)
    app.include_router(model.router)
    app.include_router(predict.router)
    app.include_router(drift_router(state.drift, require_admin=model.require_admin))
    return app


def _package_version() -> str:
    from vocalis import __version__

    return __version__


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory vocalis.serving.app:app_from_env`` (settings from the environment).

    Worker processes started by ``--workers N`` begin with no logging set up: configure it here so their
    lines carry request ids too.
    """
    settings = load_settings()
    if not logging.getLogger().handlers:
        from vocalis.serving.request_context import configure_logging

        configure_logging(settings.log_level)
    return create_app(settings)
