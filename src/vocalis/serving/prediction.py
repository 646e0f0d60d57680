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

from vocalis import audio
from vocalis.contracts.audio_summary import summarize
from vocalis.errors import ArtifactError, ConfigError
from vocalis.serving.api_errors import ApiError
from vocalis.serving.settings import Settings
from vocalis.serving.upload import LongerThanBlock, check_header, decode_error, decode_upload, on_disk

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
    """One upload's prediction, what its header said, its drift summary and the seconds the model took.

    ``info`` counts the frames actually decoded; ``streamed`` tells whether the recording was scored
    from disk in blocks (longer than ``stream_block_s``) instead of decoded whole.
    """

    prediction: FilePrediction
    info: audio.AudioInfo
    summary: dict[str, float] | None
    inference_s: float
    streamed: bool = False


def check_hop(hop_s: float | None, settings: Settings) -> None:
    """Refuse (422 ``invalid_option``) a hop below ``settings.min_hop_s``: a tiny hop multiplies the
    windows (and the work) without telling anything new. Shared by the HTTP routes and BentoML."""
    if hop_s is not None and hop_s < settings.min_hop_s:
        raise ApiError(
            422,
            "invalid_option",
            f"hop: {hop_s:g} s is below the smallest allowed, {settings.min_hop_s:g} s (VOCALIS_MIN_HOP_S)",
        )


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


def limit_native_threads() -> None:
    """Keep numpy's BLAS (OpenBLAS, MKL) to one thread in this process.

    The service already runs one prediction per core; a BLAS call that fans out (numpy's ``dot`` in the
    drift summary of every upload) starts threads that spin on the same cores as onnxruntime. Measured on
    the 2-core machine: 11.4 ms of CPU per summary with OpenBLAS' default threads, 3.5 ms with one, and
    17 ms less CPU per served request (docs/benchmarks.md, Serving).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def load_predictor(settings: Settings) -> Predictor:
    """Load the Predictor from ``settings.model_dir`` (imported here: only the service needs it).

    Also limits the process's BLAS threads (:func:`limit_native_threads`): whoever serves a Predictor
    loaded here runs predictions side by side.
    """
    from vocalis.inference import Predictor

    limit_native_threads()
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
    predictor: Predictor,
    settings: Settings,
    source: bytes | Path,
    name: str,
    opts: PredictOptions,
    *,
    summary: bool = True,
) -> UploadPrediction:
    """Check, decode and predict one upload (runs in a worker thread). Raises :class:`ApiError`.

    ``source`` is the upload's bytes or a file holding them. A recording up to ``settings.stream_block_s``
    long is decoded once, whole, and predicted from memory; a longer one is scored from disk block by
    block through :meth:`Predictor.predict_stream`, the path ``vocalis predict`` takes, so memory does not
    grow with the duration. Either way the header is checked first (duration, short audio, window count)
    and the result reports the file's own sample rate and channels and the decoded duration. With
    ``summary``, the drift summary of the decoded audio is computed too (the service logs it).
    """
    check_hop(opts.hop_s, settings)
    try:
        spec = predictor.window_spec(opts.window_s, opts.hop_s)
    except (ValueError, ConfigError) as exc:  # e.g. a window the model cannot take
        raise ApiError(422, "invalid_option", str(exc)) from None
    block_s = settings.stream_block_s
    if isinstance(source, Path):
        if not source.stat().st_size:
            raise ApiError(400, "empty_file", f"{name}: file is empty (0 bytes)")
        try:
            info = audio.info(source, name=name)  # the header only
        except audio.AudioDecodeError as exc:
            raise decode_error(exc) from None
        check_header(info, name, settings, spec)
        if info.duration > block_s:
            return _predict_streamed(predictor, settings, source, name, opts, info, summary=summary)
        source = source.read_bytes()  # short: decoded whole, like an upload held in memory
    try:
        upload = decode_upload(source, name, predictor.sample_rate, settings, spec, stream_above_s=block_s)
    except LongerThanBlock as long:
        with on_disk(source) as path:
            return _predict_streamed(predictor, settings, path, name, opts, long.info, summary=summary)
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
    drift = summarize(upload.waveform, predictor.sample_rate).to_dict() if summary else None
    return UploadPrediction(fp, info, drift, infer_s)


def _predict_streamed(
    predictor: Predictor,
    settings: Settings,
    path: Path,
    name: str,
    opts: PredictOptions,
    info: audio.AudioInfo,
    *,
    summary: bool,
) -> UploadPrediction:
    """Score a long recording from ``path`` in blocks of ``settings.stream_block_s`` (header checked)."""
    from vocalis.serving.stream_summary import summarize_file

    block_s = settings.stream_block_s
    t0 = time.perf_counter()
    try:
        fp = predictor.predict_stream(
            path,
            window_s=opts.window_s,
            hop_s=opts.hop_s,
            top_k=min(opts.top_k, len(predictor.classes)),
            min_conf=opts.min_conf,
            name=name,
            block_s=block_s,
            embedding=predictor.has_embedding,  # logged for embedding drift, as for short uploads
        )
    except audio.AudioDecodeError as exc:
        raise decode_error(exc) from None
    except (ValueError, ConfigError) as exc:
        raise ApiError(422, "invalid_option", str(exc)) from None
    infer_s = time.perf_counter() - t0
    # the frames decoded (a truncated file holds fewer than its header says), as decode_upload reports
    frames = round(fp.duration_s * info.sample_rate)
    decoded = audio.AudioInfo(info.sample_rate, info.channels, frames, info.format, info.subtype)
    drift = None
    if summary:  # a second pass over the file: the waveform never exists whole
        drift = summarize_file(path, predictor.sample_rate, decoded, name=name, block_s=block_s).to_dict()
    return UploadPrediction(fp, decoded, drift, infer_s, streamed=True)
