"""A BentoML service over the same :class:`vocalis.inference.Predictor` (BentoML 1.4 API).

``bentoml serve vocalis.serving.bento_service:VocalisBento`` (or ``bentoml serve`` next to
``bentofile.yaml``) serves two endpoints:

- ``POST /predict``: one recording -> the same file result as the FastAPI service's ``/v1/predict`` and
  ``vocalis predict --format json`` (one mapper, :func:`vocalis.inference.file_result.file_result`), plus
  ``model_version``;
- ``POST /classify``: adaptive batching (``batchable=True``). Files sent by concurrent clients are merged
  by BentoML's dispatcher into one call, whose windows go through onnxruntime as one batch; each file gets
  its top label and confidence back.

It reads the same :class:`~vocalis.serving.settings.Settings` as the FastAPI service (``VOCALIS_MODEL_DIR``,
``VOCALIS_THREADS``, ``VOCALIS_MAX_DURATION_S``, ``VOCALIS_MIN_HOP_S``, ``VOCALIS_MAX_WINDOWS``, ...) and
decodes uploads the same way (once, with the same short-audio rule; a long one in blocks). No torch.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from bentoml.exceptions import InvalidArgument

from vocalis.inference.file_result import file_result_json
from vocalis.serving.api_errors import ApiError
from vocalis.serving.prediction import PredictOptions, load_predictor, predict_upload
from vocalis.serving.settings import Settings
from vocalis.serving.upload import decode_upload

log = logging.getLogger(__name__)


@bentoml.service(
    name="vocalis",
    traffic={"timeout": 120, "concurrency": 32},
    workers=1,
)
class VocalisBento:
    """Species recognition from audio, BentoML flavour."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.predictor = load_predictor(self.settings)
        log.info("bento service loaded model %s", self.predictor.version)

    @bentoml.api
    def predict(
        self, audio_file: Path, top_k: int = 3, min_conf: float = 0.0, hop: float | None = None
    ) -> dict[str, Any]:
        """Classify one recording: per-window detections and the per-file summary.

        ``hop`` (seconds between windows, default the model's) has the service's floor,
        ``VOCALIS_MIN_HOP_S``; the window count has its cap, ``VOCALIS_MAX_WINDOWS``. A recording longer
        than ``VOCALIS_STREAM_BLOCK_S`` is scored from the uploaded file in blocks, as by the service.
        """
        if not 1 <= top_k <= 1000 or not 0.0 <= min_conf <= 1.0:
            raise InvalidArgument("top_k must be 1-1000 and min_conf 0-1")
        if hop is not None and not (math.isfinite(hop) and 0.0 < hop <= 600.0):
            raise InvalidArgument("hop must be a number of seconds in (0, 600]")
        opts = PredictOptions(top_k=top_k, min_conf=min_conf, hop_s=hop)
        try:
            done = predict_upload(
                self.predictor, self.settings, audio_file, audio_file.name, opts, summary=False
            )
        except ApiError as exc:
            raise InvalidArgument(f"{exc.error}: {exc.detail}") from None  # a 400 for the client, not a 500
        out = file_result_json(done.prediction)
        out["model_version"] = self.predictor.version
        return out

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=500)
    def classify(self, audio_files: list[Path]) -> list[dict[str, Any]]:
        """Top label of each recording; concurrent requests are batched into one onnxruntime pass."""
        spec = self.predictor.window_spec()
        cuts: list[np.ndarray] = []
        counts: list[int] = []
        errors: dict[int, str] = {}
        for i, path in enumerate(audio_files):
            try:
                upload = decode_upload(
                    path.read_bytes(), path.name, self.predictor.sample_rate, self.settings
                )
            except ApiError as exc:  # one bad file must not fail the files batched with it
                errors[i] = f"{exc.error}: {exc.detail}"
                counts.append(0)
                continue
            windows = spec.cut(upload.waveform)
            cuts.append(windows)
            counts.append(len(windows))
        probs = self.predictor.predict_windows(np.concatenate(cuts)) if cuts else np.zeros((0, 0))
        classes = self.predictor.classes
        results: list[dict[str, Any]] = []
        start = 0
        for i, (path, n) in enumerate(zip(audio_files, counts, strict=True)):
            if i in errors:
                results.append({"file": path.name, "error": errors[i]})
                continue
            file_max = probs[start : start + n].max(axis=0)
            start += n
            best = int(np.argmax(file_max))
            results.append(
                {
                    "file": path.name,
                    "label": classes[best],
                    "confidence": float(file_max[best]),
                    "windows": n,
                    "model_version": self.predictor.version,
                }
            )
        return results
