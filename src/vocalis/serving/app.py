"""The inference service: a FastAPI app over :class:`vocalis.inference.Predictor`.

The Predictor is loaded once, in the lifespan, from the artifact directory named by the settings. Every
request runs decode -> predict in a worker thread (onnxruntime releases the GIL) under a concurrency limit,
writes one row per file to the prediction log and commits it before the response is sent.

Bad input is answered with a 4xx JSON body ``{"error", "detail", "request_id"}``; nothing a client sends
should produce a 500. This module never imports torch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from vocalis import audio
from vocalis.errors import ArtifactError, ConfigError, VocalisError
from vocalis.serving.audio_summary import summarize
from vocalis.serving.metrics import ServiceMetrics
from vocalis.serving.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from vocalis.serving.request_context import install_record_factory, request_id_var
from vocalis.serving.schemas import (
    BatchItem,
    BatchResponse,
    Detection,
    ErrorBody,
    FileResult,
    Health,
    LabelScore,
    ModelCard,
    PredictResponse,
    Summary,
)
from vocalis.serving.settings import Settings
from vocalis.serving.store import NewPrediction, PredictionStore

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"

#: above this many decoded samples (frames x channels) a file is decoded block by block, so that a long
#: multichannel recording never exists in memory as one float32 array
_STREAM_ABOVE_SAMPLES = 32_000_000

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "Empty, too short or invalid audio",
        413: "Upload or audio duration over the limit",
        415: "Not a readable audio file",
        422: "Missing file or invalid option",
        503: "Model not loaded or prediction log unavailable",
    }.items()
}


class ApiError(Exception):
    """A refused request: HTTP status, a machine-readable kind and a human-readable detail."""

    def __init__(self, status: int, error: str, detail: Any) -> None:
        super().__init__(f"{error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail


@dataclass(frozen=True)
class PredictOptions:
    """Validated per-request options."""

    top_k: int = 3
    min_conf: float = 0.0
    window_s: float | None = None
    hop_s: float | None = None
    site: str | None = None
    device: str | None = None


@dataclass
class ServedFile:
    """One file's result and its prediction-log row."""

    result: FileResult
    row: NewPrediction


class ServiceState:
    """What the app holds between requests: settings, the current Predictor, the log, the metrics."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.predictor: Any = None
        self.store: PredictionStore | None = None
        self.concurrency, self.threads = resolve_parallelism(settings)
        self.limiter = anyio.CapacityLimiter(self.concurrency)
        self.reload_lock = asyncio.Lock()
        self.loaded_at: datetime | None = None


def resolve_parallelism(settings: Settings) -> tuple[int, int]:
    """How many predictions run at once and with how many onnxruntime threads each.

    By default one prediction per CPU core, each single-threaded: measured on a 2-core machine under load,
    that served 10.5 requests/s against 4.0 for one two-threaded prediction at a time and 6.6 for two,
    whose intra-op threads spin and wait on each other (docs/benchmarks.md, Serving).
    """
    from vocalis.inference import default_threads

    cores = default_threads()
    concurrency = settings.inference_concurrency or cores
    threads = settings.threads or max(1, cores // concurrency)
    return concurrency, threads


def load_predictor(settings: Settings) -> Any:
    """Load the Predictor from ``settings.model_dir`` (imported here: only the service needs it)."""
    from vocalis.inference import Predictor

    model_dir = Path(settings.model_dir)
    if not (model_dir / "model.onnx").is_file() or not (model_dir / "model.json").is_file():
        raise ArtifactError(
            f"{model_dir}: not a model artifact (needs model.onnx and model.json); "
            "set VOCALIS_MODEL_DIR or pass --model"
        )
    return Predictor.from_dir(model_dir, threads=resolve_parallelism(settings)[1])


def card_dict(predictor: Any) -> dict[str, Any]:
    """The predictor's model card as a plain dict, whatever type the Predictor keeps it as."""
    card = predictor.card
    if isinstance(card, dict):
        return dict(card)
    if hasattr(card, "to_dict"):
        return dict(card.to_dict())
    if dataclasses.is_dataclass(card) and not isinstance(card, type):
        return dataclasses.asdict(card)
    return dict(vars(card))


def _publish_model(state: ServiceState) -> None:
    card = card_dict(state.predictor)
    state.metrics.set_model(
        str(card.get("name", "")), str(state.predictor.version), list(state.predictor.classes)
    )


# ---------------------------------------------------------------------------------------------- predicting


def _decode_for_model(data: bytes, name: str, sample_rate: int, settings: Settings) -> tuple[np.ndarray, Any]:
    """Check and decode an upload to a mono waveform at the model rate; raises :class:`ApiError`."""
    if not data:
        raise ApiError(400, "empty_file", f"{name}: file is empty (0 bytes)")
    try:
        hdr = audio.info(data, name=name)
    except audio.AudioDecodeError as exc:
        kind, status = (
            ("unsupported_media", 415) if "not a readable audio" in exc.reason else ("invalid_audio", 400)
        )
        raise ApiError(status, kind, str(exc)) from None
    if hdr.duration > settings.max_duration_s:
        raise ApiError(
            413,
            "audio_too_long",
            f"{name}: {hdr.duration:.1f} s of audio is longer than the limit of "
            f"{settings.max_duration_s:.0f} s",
        )
    if hdr.frames == 0:
        raise ApiError(400, "empty_audio", f"{name}: contains no audio samples")
    if hdr.duration < settings.min_duration_s:
        raise ApiError(
            400,
            "audio_too_short",
            f"{name}: {hdr.duration:.3f} s of audio is shorter than the minimum of "
            f"{settings.min_duration_s} s",
        )
    try:
        if hdr.frames * hdr.channels > _STREAM_ABOVE_SAMPLES:
            wav = np.concatenate(list(audio.stream(data, sample_rate, name=name)))
        else:
            wav = audio.load(data, sample_rate, name=name)
    except audio.AudioDecodeError as exc:
        raise ApiError(400, "invalid_audio", str(exc)) from None
    return wav, hdr


def _store_upload(settings: Settings, data: bytes, request_id: str, index: int, name: str) -> str | None:
    if settings.upload_dir is None:
        return None
    # the client's file name is reduced to a safe basename: it never chooses where the file goes
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name)[:100] or "upload"
    folder = Path(settings.upload_dir) / datetime.now(UTC).strftime("%Y%m%d")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{request_id}-{index}-{safe}"
    path.write_bytes(data)
    return str(path)


def predict_file(
    predictor: Any,
    settings: Settings,
    data: bytes,
    name: str,
    opts: PredictOptions,
    *,
    request_id: str,
    index: int,
    endpoint: str,
    metrics: ServiceMetrics,
) -> ServedFile:
    """Decode, predict and describe one upload (runs in a worker thread). Raises :class:`ApiError`."""
    t0 = time.perf_counter()
    wav, hdr = _decode_for_model(data, name, int(predictor.sample_rate), settings)
    t_infer = time.perf_counter()
    try:
        fp = predictor.predict(
            wav,
            window_s=opts.window_s,
            hop_s=opts.hop_s,
            top_k=min(opts.top_k, len(predictor.classes)),
            min_conf=opts.min_conf,
            name=name,
        )
    except (ValueError, ConfigError) as exc:  # e.g. a window the model cannot take
        raise ApiError(422, "invalid_option", str(exc)) from None
    infer_s = time.perf_counter() - t_infer
    metrics.inference_latency.observe(infer_s)
    duration = hdr.duration
    metrics.audio_seconds.inc(duration)

    classes = list(predictor.classes)
    detections: list[Detection] = []
    for w in fp.windows:
        probs = np.asarray(w.probs, dtype=np.float64)
        best = int(np.argmax(probs))
        if probs[best] < opts.min_conf:
            continue
        detections.append(
            Detection(
                start_s=float(w.start_s),
                end_s=float(w.end_s),
                label=classes[best],
                confidence=float(probs[best]),
                top=[LabelScore(label=str(lbl), confidence=float(p)) for lbl, p in w.top],
            )
        )
    s = fp.summary
    summary = Summary(
        top_label=str(s.top_label),
        top_confidence=float(s.top_confidence),
        max_probs={str(k): float(v) for k, v in s.max_probs.items()},
        mean_probs={str(k): float(v) for k, v in s.mean_probs.items()},
    )
    metrics.predictions.labels(summary.top_label).inc()
    result = FileResult(
        file=name,
        duration_s=duration,
        sample_rate=hdr.sample_rate,
        channels=hdr.channels,
        detections=detections,
        summary=summary,
    )
    upload_path = _store_upload(settings, data, request_id, index, name)
    row = NewPrediction(
        request_id=request_id,
        endpoint=endpoint,
        file_name=name[:512],
        model_version=str(predictor.version),
        duration_s=duration,
        sample_rate=hdr.sample_rate,
        channels=hdr.channels,
        summary=summarize(wav, int(predictor.sample_rate)).to_dict(),
        top_label=summary.top_label,
        confidence=summary.top_confidence,
        probabilities=summary.mean_probs,
        n_windows=len(fp.windows),
        latency_ms=(time.perf_counter() - t0) * 1e3,
        site=opts.site,
        device=opts.device,
        upload_path=upload_path,
    )
    return ServedFile(result, row)


# --------------------------------------------------------------------------------------------------- app


def _error_response(state: ServiceState, status: int, error: str, detail: Any) -> JSONResponse:
    state.metrics.errors.labels(error).inc()
    body = {"error": error, "detail": jsonable_encoder(detail), "request_id": request_id_var.get()}
    return JSONResponse(body, status_code=status)


_STATUS_KINDS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media",
    422: "invalid_request",
    503: "unavailable",
}


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service app. ``settings`` defaults to the environment (``VOCALIS_*``)."""
    settings = settings or Settings()
    install_record_factory()
    metrics = ServiceMetrics()
    state = ServiceState(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.predictor = await anyio.to_thread.run_sync(load_predictor, settings)
        state.store = await anyio.to_thread.run_sync(PredictionStore, settings.database_url)
        state.loaded_at = datetime.now(UTC)
        _publish_model(state)
        metrics.model_loads.labels("ok").inc()
        log.info(
            "serving model %s (%d classes) from %s: %d prediction(s) at a time, %d ORT thread(s) each",
            state.predictor.version,
            len(state.predictor.classes),
            settings.model_dir,
            state.concurrency,
            state.threads,
        )
        try:
            yield
        finally:
            state.store.close()

    app = FastAPI(
        title="vocalis",
        version=_package_version(),
        summary="Recognise animal species from their vocalizations.",
        lifespan=lifespan,
        responses=_ERROR_RESPONSES,
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
    app.add_middleware(RequestContextMiddleware, metrics=metrics)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error_response(state, exc.status, exc.error, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()
        ]
        return _error_response(state, 422, "invalid_request", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = _STATUS_KINDS.get(exc.status_code, f"http_{exc.status_code}")
        response = _error_response(state, exc.status_code, kind, exc.detail)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error: %s", exc)
        return _error_response(
            state, 500, "internal_error", "the server failed; see its log for this request id"
        )

    def _ready_predictor() -> Any:
        if state.predictor is None:
            raise ApiError(503, "not_ready", "the model is not loaded")
        return state.predictor

    async def _persist(rows: list[NewPrediction]) -> None:
        if not rows:
            return
        assert state.store is not None
        try:
            await anyio.to_thread.run_sync(state.store.add, rows)
        except Exception as exc:
            # not acknowledged: a prediction the log cannot keep is an error, never a silent success
            log.exception("prediction log write failed")
            raise ApiError(
                503, "log_unavailable", f"the prediction log could not be written ({type(exc).__name__})"
            ) from None

    def _options(
        top_k: int,
        min_conf: float,
        window: float | None,
        hop: float | None,
        site: str | None,
        device: str | None,
    ) -> PredictOptions:
        return PredictOptions(
            top_k=top_k, min_conf=min_conf, window_s=window, hop_s=hop, site=site, device=device
        )

    # ------------------------------------------------------------------------------------------ routes

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/health", response_model=Health, tags=["ops"])
    async def health() -> Health:
        """Liveness: the process answers."""
        return Health(status="alive")

    @app.get("/ready", response_model=Health, tags=["ops"])
    async def ready() -> Health:
        """Readiness: the model is loaded and the prediction log answers."""
        predictor = _ready_predictor()
        assert state.store is not None
        if not await anyio.to_thread.run_sync(state.store.ping):
            raise ApiError(503, "log_unavailable", "the prediction log database does not answer")
        return Health(status="ready", model_version=str(predictor.version))

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def prometheus_metrics() -> Response:
        """Prometheus metrics (text exposition format)."""
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/model", response_model=ModelCard, tags=["model"])
    async def model_card() -> dict[str, Any]:
        """The served model's card: classes, sample rate, window, metrics, provenance."""
        predictor = _ready_predictor()
        card = card_dict(predictor)
        card.setdefault("version", str(predictor.version))
        card.setdefault("classes", list(predictor.classes))
        card["loaded_at"] = state.loaded_at.isoformat() if state.loaded_at else None
        return jsonable_encoder(card)

    @app.post("/v1/predict", response_model=PredictResponse, tags=["predict"])
    async def predict(
        request: Request,
        file: UploadFile = File(..., description="One recording (WAV, FLAC, OGG, MP3, ...)."),
        top_k: int = Form(3, ge=1, le=1000, description="Classes listed per window."),
        min_conf: float = Form(
            0.0, ge=0.0, le=1.0, allow_inf_nan=False, description="Hide windows below this."
        ),
        window: float | None = Form(None, gt=0.0, le=600.0, allow_inf_nan=False, description="Window, s."),
        hop: float | None = Form(None, gt=0.0, le=600.0, allow_inf_nan=False, description="Hop, s."),
        site: str | None = Form(None, max_length=256, description="Recording site tag (logged)."),
        device: str | None = Form(None, max_length=256, description="Recorder tag (logged)."),
    ) -> PredictResponse:
        """Classify one recording: per-window detections and a per-file summary."""
        t0 = time.perf_counter()
        predictor = _ready_predictor()  # held for the whole request: a reload cannot pull it away
        request_id = request_id_var.get()
        opts = _options(top_k, min_conf, window, hop, site, device)
        data = await file.read()
        name = file.filename or "upload"
        served = await anyio.to_thread.run_sync(
            lambda: predict_file(
                predictor,
                settings,
                data,
                name,
                opts,
                request_id=request_id,
                index=0,
                endpoint="predict",
                metrics=metrics,
            ),
            limiter=state.limiter,
        )
        await _persist([served.row])
        return PredictResponse(
            **served.result.model_dump(),
            request_id=request_id,
            model_version=str(predictor.version),
            processing_ms=(time.perf_counter() - t0) * 1e3,
        )

    @app.post("/v1/predict/batch", response_model=BatchResponse, tags=["predict"])
    async def predict_batch(
        request: Request,
        files: list[UploadFile] = File(
            ..., description="Several recordings; each gets a result or an error."
        ),
        top_k: int = Form(3, ge=1, le=1000),
        min_conf: float = Form(0.0, ge=0.0, le=1.0, allow_inf_nan=False),
        window: float | None = Form(None, gt=0.0, le=600.0, allow_inf_nan=False),
        hop: float | None = Form(None, gt=0.0, le=600.0, allow_inf_nan=False),
        site: str | None = Form(None, max_length=256),
        device: str | None = Form(None, max_length=256),
    ) -> BatchResponse:
        """Classify several recordings in one request; a bad file does not stop the others."""
        t0 = time.perf_counter()
        if len(files) > settings.max_batch_files:
            raise ApiError(
                413,
                "too_many_files",
                f"{len(files)} files in one batch; the limit is {settings.max_batch_files}",
            )
        predictor = _ready_predictor()
        request_id = request_id_var.get()
        opts = _options(top_k, min_conf, window, hop, site, device)
        items: list[BatchItem] = []
        rows: list[NewPrediction] = []
        for i, upload in enumerate(files):
            name = upload.filename or f"file{i}"
            data = await upload.read()
            try:
                served = await anyio.to_thread.run_sync(
                    lambda d=data, n=name, i=i: predict_file(  # type: ignore[misc]
                        predictor,
                        settings,
                        d,
                        n,
                        opts,
                        request_id=request_id,
                        index=i,
                        endpoint="predict_batch",
                        metrics=metrics,
                    ),
                    limiter=state.limiter,
                )
            except ApiError as exc:
                metrics.errors.labels(exc.error).inc()
                items.append(
                    BatchItem(
                        file=name,
                        ok=False,
                        status=exc.status,
                        error=ErrorBody(error=exc.error, detail=exc.detail, request_id=request_id),
                    )
                )
                continue
            except Exception as exc:  # one broken file must not fail the batch
                log.exception("unexpected error on batch file %s", name)
                metrics.errors.labels("internal_error").inc()
                items.append(
                    BatchItem(
                        file=name,
                        ok=False,
                        status=500,
                        error=ErrorBody(
                            error="internal_error", detail=type(exc).__name__, request_id=request_id
                        ),
                    )
                )
                continue
            rows.append(served.row)
            items.append(BatchItem(file=name, ok=True, status=200, result=served.result))
        await _persist(rows)
        return BatchResponse(
            request_id=request_id,
            model_version=str(predictor.version),
            processing_ms=(time.perf_counter() - t0) * 1e3,
            results=items,
        )

    # ------------------------------------------------------------------------------------------- admin

    def _check_admin(request: Request) -> None:
        token = settings.admin_token
        if token is None:  # admin disabled: the endpoint does not exist
            raise ApiError(404, "not_found", "admin endpoints are disabled (VOCALIS_ADMIN_TOKEN is not set)")
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise ApiError(401, "unauthorized", "admin endpoints need 'Authorization: Bearer <token>'")
        if not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
            raise ApiError(403, "forbidden", "wrong admin token")

    @app.post("/v1/admin/reload", tags=["admin"])
    async def reload_model(request: Request) -> dict[str, Any]:
        """Load the artifact at the configured model directory again and swap it in atomically.

        Requests already running finish on the model they started with; new ones get the new model.
        """
        _check_admin(request)
        async with state.reload_lock:
            old = state.predictor
            try:
                new = await anyio.to_thread.run_sync(load_predictor, settings)
            except (VocalisError, OSError, ValueError) as exc:
                metrics.model_loads.labels("failed").inc()
                log.warning("reload failed, keeping model %s: %s", getattr(old, "version", None), exc)
                raise ApiError(
                    409, "reload_failed", f"kept model {old.version if old else None}: {exc}"
                ) from None
            state.predictor = new  # one reference assignment: atomic for every request that starts later
            state.loaded_at = datetime.now(UTC)
            _publish_model(state)
            metrics.model_loads.labels("ok").inc()
        log.info("model reloaded: %s -> %s", getattr(old, "version", None), new.version)
        return {
            "status": "reloaded",
            "previous_version": getattr(old, "version", None),
            "model_version": new.version,
        }

    return app


def _package_version() -> str:
    from vocalis import __version__

    return __version__


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory vocalis.serving.app:app_from_env`` (settings from the environment).

    Worker processes started by ``--workers N`` begin with no logging set up: configure it here so their
    lines carry request ids too.
    """
    settings = Settings()
    if not logging.getLogger().handlers:
        from vocalis.serving.request_context import configure_logging

        configure_logging(settings.log_level)
    return create_app(settings)
