"""The model card: the facts an exported model carries next to ``model.onnx`` (``model.json``).

numpy/json only (no torch, no onnx): the predictor and the service read cards without the training extra.
The card is also copied, field by field, into the ONNX file's ``metadata_props`` so that a lone
``model.onnx`` still says what it is.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from vocalis.errors import ArtifactError

MODEL_FILE = "model.onnx"
CARD_FILE = "model.json"

#: fields ``model.json`` must hold for an artifact to be usable
REQUIRED_FIELDS = ("classes", "sample_rate", "window_s", "hop_s", "features")


@dataclass
class ModelCard:
    """What ``model.json`` holds (see docs/contracts.md, "Model artifact").

    Attribute access (``card.classes``) and mapping access (``card["classes"]``) both work, so code that
    treats the card as the JSON dict it is on disk keeps working.
    """

    name: str
    version: str
    classes: list[str]
    sample_rate: int
    window_s: float
    hop_s: float
    features: dict[str, Any]
    architecture: str
    metrics: dict[str, Any] = field(default_factory=dict)
    cache_hash: str | None = None
    git_commit: str | None = None
    created: str | None = None
    vocalis_version: str | None = None
    quantization: str | None = None
    onnx_opset: int | None = None
    #: samples per input window (``round(window_s * sample_rate)``): the ONNX input's fixed second axis
    input_samples: int | None = None
    #: how the export-time parity check went: tolerance, measured difference, number and source of windows
    parity: dict[str, Any] = field(default_factory=dict)
    #: optimisation facts: pruning amount, int8 accuracy gate, calibration
    optimization: dict[str, Any] = field(default_factory=dict)
    #: where it came from: run dir, checkpoint, cache dir
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def window_samples(self) -> int:
        """Samples per window at the card's sample rate."""
        return self.input_samples or round(self.window_s * self.sample_rate)

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        """Mapping-style access with a default."""
        return getattr(self, key, default)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, as written to ``model.json``."""
        return asdict(self)

    def metadata_props(self) -> dict[str, str]:
        """The card as ONNX ``metadata_props`` (string values: JSON for anything not a string)."""
        return {
            f"vocalis.{k}": v if isinstance(v, str) else json.dumps(v, sort_keys=True)
            for k, v in self.to_dict().items()
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``model.json`` into ``directory``."""
        path = Path(directory) / CARD_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = CARD_FILE) -> ModelCard:
        """Build a card from a dict, checking the fields the predictor relies on."""
        if not isinstance(data, dict):
            raise ArtifactError(f"{where}: the model card must be a JSON object")
        missing = [k for k in REQUIRED_FIELDS if k not in data]
        if missing:
            raise ArtifactError(f"{where}: the model card lacks the fields {missing}")
        classes = data["classes"]
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            raise ArtifactError(f"{where}: 'classes' must be a non-empty list of class names")
        try:
            sample_rate = int(data["sample_rate"])
            window_s, hop_s = float(data["window_s"]), float(data["hop_s"])
        except (TypeError, ValueError):
            raise ArtifactError(f"{where}: sample_rate, window_s and hop_s must be numbers") from None
        if sample_rate <= 0 or not (window_s > 0 and math.isfinite(window_s)) or not hop_s > 0:
            raise ArtifactError(f"{where}: sample_rate, window_s and hop_s must be positive")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.update(sample_rate=sample_rate, window_s=window_s, hop_s=hop_s)
        values.setdefault("name", "model")
        values.setdefault("version", "unknown")
        values.setdefault("architecture", "unknown")
        if not isinstance(values.get("features"), dict):
            raise ArtifactError(f"{where}: 'features' must be an object of featurizer parameters")
        return cls(**values)

    @classmethod
    def load(cls, directory: str | Path) -> ModelCard:
        """Read ``model.json`` from an artifact directory (:class:`ArtifactError` when missing/corrupt)."""
        path = Path(directory) / CARD_FILE
        if not path.is_file():
            raise ArtifactError(f"{path}: model card not found (is '{directory}' an exported model?)")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{path}: not a readable JSON model card ({exc})") from None
        return cls.from_dict(data, where=str(path))
