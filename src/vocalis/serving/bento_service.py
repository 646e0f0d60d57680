"""A BentoML service over the same :class:`vocalis.inference.Predictor` (BentoML 1.4 API).

``bentoml serve vocalis.serving.bento_service:VocalisBento`` (or ``bentoml serve`` next to
``bentofile.yaml``) serves two endpoints:

- ``POST /predict``: one recording -> per-window detections and the per-file summary (the same numbers as
  the FastAPI service's ``/v1/predict``);
- ``POST /classify``: adaptive batching (``batchable=True``). Files sent by concurrent clients are merged
  by BentoML's dispatcher into one call, whose windows go through onnxruntime as one batch; each file gets
  its top label and confidence back.

The artifact directory comes from ``VOCALIS_MODEL_DIR`` (default ``artifacts/demo``). No torch.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from bentoml.exceptions import InvalidArgument

from vocalis import audio
from vocalis.errors import ConfigError

log = logging.getLogger(__name__)


def _model_dir() -> Path:
    return Path(os.environ.get("VOCALIS_MODEL_DIR", "artifacts/demo"))


@bentoml.service(
    name="vocalis",
    traffic={"timeout": 120, "concurrency": 32},
    workers=1,
)
class VocalisBento:
    """Species recognition from audio, BentoML flavour."""

    def __init__(self) -> None:
        from vocalis.inference import Predictor

        threads = os.environ.get("VOCALIS_THREADS")
        self.predictor = Predictor.from_dir(_model_dir(), threads=int(threads) if threads else None)
        log.info("bento service loaded model %s", self.predictor.version)

    @bentoml.api
    def predict(self, audio_file: Path, top_k: int = 3, min_conf: float = 0.0) -> dict[str, Any]:
        """Classify one recording: per-window top labels and the per-file summary."""
        try:
            fp = self.predictor.predict(
                audio_file.read_bytes(), top_k=top_k, min_conf=min_conf, name=audio_file.name
            )
        except (audio.AudioDecodeError, ConfigError, ValueError) as exc:
            raise InvalidArgument(str(exc)) from None  # a 400 for the client, not a 500
        out = fp.to_dict()
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
                wave = audio.load(path, self.predictor.sample_rate, min_duration=0.01)
            except audio.AudioDecodeError as exc:  # one bad file must not fail the files batched with it
                errors[i] = exc.reason
                counts.append(0)
                continue
            windows = spec.cut(wave)
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
