"""Prediction routes: one recording, or several in one request (a bad file never fails the others).

Each file is decoded once and predicted in a worker thread (onnxruntime releases the GIL) under the
service's concurrency limit; its row is committed to the prediction log before the response is sent.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Annotated, BinaryIO

import anyio
from fastapi import APIRouter, Depends, File, Form, UploadFile

from vocalis.inference import Predictor
from vocalis.inference.file_result import file_result
from vocalis.monitoring.embedding import embedding_summary
from vocalis.serving.api_errors import ApiError
from vocalis.serving.prediction import PredictOptions, check_hop, predict_upload
from vocalis.serving.request_context import request_id_var
from vocalis.serving.schemas import BatchItem, BatchResponse, ErrorBody, FileResult, PredictResponse
from vocalis.serving.state import LoadedPredictor, ServiceState, State
from vocalis.serving.store import NewPrediction
from vocalis.serving.upload import store_upload, upload_source

log = logging.getLogger(__name__)

router = APIRouter(tags=["predict"])


async def predict_options(
    state: State,
    top_k: int = Form(3, ge=1, le=1000, description="Classes listed per window."),
    min_conf: float = Form(
        0.0,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Leave out labels below this probability; windows with no label left are not listed.",
    ),
    window: float | None = Form(
        None, gt=0.0, le=600.0, allow_inf_nan=False, description="Window, s (must equal the model's)."
    ),
    hop: float | None = Form(None, gt=0.0, le=600.0, allow_inf_nan=False, description="Hop, s."),
    site: str | None = Form(None, max_length=256, description="Recording site tag (logged)."),
    device: str | None = Form(None, max_length=256, description="Recorder tag (logged)."),
) -> PredictOptions:
    """Dependency: the form options every prediction route takes (async: no thread hop, see state.py)."""
    check_hop(hop, state.settings)  # before the body is read: a hostile hop costs nothing
    return PredictOptions(
        top_k=top_k, min_conf=min_conf, window_s=window, hop_s=hop, site=site, device=device
    )


Options = Annotated[PredictOptions, Depends(predict_options)]


@dataclass
class ServedFile:
    """One file's result and its prediction-log row."""

    result: FileResult
    row: NewPrediction


def serve_file(
    state: ServiceState,
    predictor: Predictor,
    upload: BinaryIO,
    name: str,
    opts: PredictOptions,
    *,
    request_id: str,
    index: int,
    endpoint: str,
) -> ServedFile:
    """Decode, predict and describe one upload, and build its log row (runs in a worker thread).

    ``upload`` is the uploaded file as Starlette spooled it: a small one is read into memory, a larger
    one is scored from a temporary file (a long recording block by block, see :func:`predict_upload`).
    """
    t0 = time.perf_counter()
    with upload_source(upload) as source:
        done = predict_upload(predictor, state.settings, source, name, opts)
        stored = store_upload(state.settings, source, request_id, index, name)
    fp, info = done.prediction, done.info
    metrics = state.metrics
    metrics.inference_latency.observe(done.inference_s)
    metrics.audio_seconds.inc(info.duration)
    metrics.predictions.labels(fp.summary.top_label).inc()
    result = file_result(fp)
    row = NewPrediction(
        request_id=request_id,
        endpoint=endpoint,
        file_name=name[:512],
        model_name=state.label_of(predictor),
        model_version=predictor.version,
        duration_s=info.duration,
        sample_rate=info.sample_rate,
        channels=info.channels,
        summary=done.summary or {},
        top_label=result.summary.top_label,
        confidence=result.summary.top_confidence,
        probabilities=result.summary.mean_probs,
        n_windows=len(fp.windows),
        latency_ms=(time.perf_counter() - t0) * 1e3,
        site=opts.site,
        device=opts.device,
        upload_path=stored,
        embedding=embedding_summary(fp.embedding),
    )
    return ServedFile(result, row)


@router.post("/v1/predict", response_model=PredictResponse)
async def predict(
    state: State,
    predictor: LoadedPredictor,
    opts: Options,
    file: UploadFile = File(..., description="One recording (WAV, FLAC, OGG, MP3, ...)."),
) -> PredictResponse:
    """Classify one recording: per-window detections and a per-file summary."""
    t0 = time.perf_counter()
    request_id = request_id_var.get()
    name = file.filename or "upload"
    served = await anyio.to_thread.run_sync(
        lambda: serve_file(
            state, predictor, file.file, name, opts, request_id=request_id, index=0, endpoint="predict"
        ),
        limiter=state.limiter,
    )
    await state.persist([served.row])
    return PredictResponse(
        **dict(served.result),
        request_id=request_id,
        model_version=predictor.version,
        processing_ms=(time.perf_counter() - t0) * 1e3,
    )


@router.post("/v1/predict/batch", response_model=BatchResponse)
async def predict_batch(
    state: State,
    predictor: LoadedPredictor,
    opts: Options,
    files: list[UploadFile] = File(..., description="Several recordings; each gets a result or an error."),
) -> BatchResponse:
    """Classify several recordings in one request; a bad file does not stop the others."""
    t0 = time.perf_counter()
    limit = state.settings.max_batch_files
    if len(files) > limit:
        raise ApiError(413, "too_many_files", f"{len(files)} files in one batch; the limit is {limit}")
    request_id = request_id_var.get()
    items: list[BatchItem] = []
    rows: list[NewPrediction] = []
    for i, upload in enumerate(files):
        name = upload.filename or f"file{i}"
        try:
            served = await anyio.to_thread.run_sync(
                lambda d=upload.file, n=name, i=i: serve_file(  # type: ignore[misc]
                    state, predictor, d, n, opts, request_id=request_id, index=i, endpoint="predict_batch"
                ),
                limiter=state.limiter,
            )
        except ApiError as exc:
            state.metrics.errors.labels(exc.error).inc()
            error = ErrorBody(error=exc.error, detail=exc.detail, request_id=request_id)
            items.append(BatchItem(file=name, ok=False, status=exc.status, error=error))
            continue
        except Exception as exc:  # one broken file must not fail the batch
            log.exception("unexpected error on batch file %s", name)
            state.metrics.errors.labels("internal_error").inc()
            error = ErrorBody(error="internal_error", detail=type(exc).__name__, request_id=request_id)
            items.append(BatchItem(file=name, ok=False, status=500, error=error))
            continue
        rows.append(served.row)
        items.append(BatchItem(file=name, ok=True, status=200, result=served.result))
    await state.persist(rows)
    return BatchResponse(
        request_id=request_id,
        model_version=predictor.version,
        processing_ms=(time.perf_counter() - t0) * 1e3,
        results=items,
    )
