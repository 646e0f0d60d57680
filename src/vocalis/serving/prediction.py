"""The service's side of the Predictor: loading it, how many run at once, and one upload -> one prediction.

Shared by the FastAPI routes and the BentoML service, so both decode an upload the same way (once), apply
the same short-audio rule and the same ``min_conf``. Imports the Predictor lazily: never torch.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vocalis.errors import ArtifactError, ConfigError
from vocalis.serving.api_errors import ApiError
from vocalis.serving.settings import Settings
from vocalis.serving.upload import DecodedUpload, decode_upload

if TYPE_CHECKING:
    from vocalis.inference import FilePrediction, Predictor


@dataclass(frozen=True)
class PredictOptions:
    """Validated per-request options."""

    top_k: int = 3
    min_conf: float = 0.0
    window_s: float | None = None
    hop_s: float | None = None
    site: str | None = None
    device: str | None = None


@dataclass(frozen=True)
class UploadPrediction:
    """One upload's prediction, the decoded audio it was made from, and the seconds the model took."""

    prediction: FilePrediction
    upload: DecodedUpload
    inference_s: float


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


def load_predictor(settings: Settings) -> Predictor:
    """Load the Predictor from ``settings.model_dir`` (imported here: only the service needs it)."""
    from vocalis.inference import Predictor

    model_dir = Path(settings.model_dir)
    if not (model_dir / "model.onnx").is_file() or not (model_dir / "model.json").is_file():
        raise ArtifactError(
            f"{model_dir}: not a model artifact (needs model.onnx and model.json); "
            "set VOCALIS_MODEL_DIR or pass --model"
        )
    return Predictor.from_dir(model_dir, threads=resolve_parallelism(settings)[1])


def card_dict(predictor: Predictor) -> dict[str, Any]:
    """The predictor's model card as a plain dict, whatever type the Predictor keeps it as."""
    card: Any = predictor.card
    if isinstance(card, dict):
        return dict(card)
    if hasattr(card, "to_dict"):
        return dict(card.to_dict())
    if hasattr(card, "model_dump"):
        return dict(card.model_dump(mode="json"))
    if dataclasses.is_dataclass(card) and not isinstance(card, type):
        return dataclasses.asdict(card)
    return dict(vars(card))


def predict_upload(
    predictor: Predictor, settings: Settings, data: bytes, name: str, opts: PredictOptions
) -> UploadPrediction:
    """Decode ``data`` once and predict it (runs in a worker thread). Raises :class:`ApiError`.

    The Predictor sees the decoded waveform; the result reports the file's own sample rate and channels and
    the decoded duration, which the waveform alone (mono, at the model rate) no longer tells.
    """
    try:
        spec = predictor.window_spec(opts.window_s, opts.hop_s)
    except (ValueError, ConfigError) as exc:  # e.g. a window the model cannot take
        raise ApiError(422, "invalid_option", str(exc)) from None
    upload = decode_upload(data, name, predictor.sample_rate, settings, spec)
    t0 = time.perf_counter()
    try:
        fp = predictor.predict(
            upload.waveform,
            window_s=opts.window_s,
            hop_s=opts.hop_s,
            top_k=min(opts.top_k, len(predictor.classes)),
            min_conf=opts.min_conf,
            name=name,
            embedding=predictor.has_embedding,  # same session run; logged for embedding drift
        )
    except (ValueError, ConfigError) as exc:  # e.g. a window the model cannot take
        raise ApiError(422, "invalid_option", str(exc)) from None
    infer_s = time.perf_counter() - t0
    info = upload.info
    fp = dataclasses.replace(
        fp, duration_s=info.duration, sample_rate=info.sample_rate, channels=info.channels
    )
    return UploadPrediction(fp, upload, infer_s)
