"""The model card: the facts an exported model carries next to ``model.onnx`` (``model.json``).

One pydantic model, read by prediction and the service (no torch, no onnx) and written by export. The card
is also copied, field by field, into the ONNX file's ``metadata_props`` so that a lone ``model.onnx`` still
says what it is. Fields a newer version adds are kept (``extra="allow"``), so a card round-trips.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vocalis.contracts.features import FeatureParams
from vocalis.errors import ArtifactError

MODEL_FILE = "model.onnx"
CARD_FILE = "model.json"
#: the drift reference export stores with the model (:mod:`vocalis.monitoring.reference`)
REFERENCE_FILES = ("reference.parquet", "reference.json")
#: what a two-part transfer artifact adds (:mod:`vocalis.transfer.export`): the backbone file, its licence
BACKBONE_FILES = ("backbone.tflite", "BACKBONE_LICENSE.txt")
#: every file an artifact directory may hold; export refuses to overwrite a folder holding anything else
ARTIFACT_FILES = frozenset({MODEL_FILE, CARD_FILE, *REFERENCE_FILES, *BACKBONE_FILES})


class ModelCard(BaseModel):
    """What ``model.json`` holds (see docs/contracts.md, "Model artifact").

    Attribute access (``card.classes``) and mapping access (``card["classes"]``, ``card.get("x")``) both
    work. ``features`` is the featurizer's parameters as the JSON object (validated by
    :class:`FeatureParams`); :attr:`feature_params` gives the object.
    """

    model_config = ConfigDict(extra="allow")

    name: str = "model"
    version: str = "unknown"
    classes: list[str] = Field(min_length=1)
    sample_rate: int = Field(gt=0)
    window_s: float = Field(gt=0)
    hop_s: float = Field(gt=0)
    features: dict[str, Any]
    architecture: str = "unknown"
    metrics: dict[str, Any] = Field(default_factory=dict)
    cache_hash: str | None = None
    git_commit: str | None = None
    created: str | None = None
    vocalis_version: str | None = None
    quantization: str | None = None
    onnx_opset: int | None = None
    #: samples per input window (``round(window_s * sample_rate)``): the ONNX input's fixed second axis
    input_samples: int | None = None
    #: the window hop (samples) at which ``model.onnx`` also takes streams (rows of k windows, see
    #: docs/artifact.md); ``None``: one window per row only (artifacts exported before streams)
    stream_hop_samples: int | None = Field(default=None, gt=0)
    #: how the export-time parity check went: tolerance, measured difference, number and source of windows
    parity: dict[str, Any] = Field(default_factory=dict)
    #: optimisation facts: pruning amount, int8 accuracy gate, calibration
    optimization: dict[str, Any] = Field(default_factory=dict)
    #: where it came from: run dir, checkpoint, cache dir
    source: dict[str, Any] = Field(default_factory=dict)

    @field_validator("features", mode="before")
    @classmethod
    def _features(cls, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValueError("must be an object of featurizer parameters")
        FeatureParams.from_dict(value)  # raises ValueError on impossible parameters
        return value

    @field_validator("classes")
    @classmethod
    def _classes(cls, value: list[str]) -> list[str]:
        if not all(value):
            raise ValueError("class names must be non-empty")
        return value

    @field_validator("window_s", "hop_s")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be finite")
        return value

    @property
    def feature_params(self) -> FeatureParams:
        """The featurizer's parameters as the object."""
        return FeatureParams.from_dict(self.features)

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
        return self.model_dump(mode="json")

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
    def from_dict(cls, data: Any, *, where: str = CARD_FILE) -> ModelCard:
        """Validate a card; :class:`ArtifactError` names ``where`` and every bad field."""
        if not isinstance(data, dict):
            raise ArtifactError(f"{where}: the model card must be a JSON object")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            missing = [".".join(map(str, e["loc"])) for e in exc.errors() if e["type"] == "missing"]
            if missing:
                raise ArtifactError(f"{where}: the model card lacks the fields {missing}") from None
            problems = "; ".join(f"'{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors())
            raise ArtifactError(f"{where}: invalid model card ({problems})") from None

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


def required_files(card: ModelCard) -> list[str]:
    """The files an artifact cannot work without, as its card describes it.

    Every artifact: ``model.onnx`` and ``model.json``. A two-part (transfer) artifact adds its backbone's
    model file and licence (the card's ``backbone.file`` and ``backbone.licence_file``).
    """
    files = [MODEL_FILE, CARD_FILE]
    backbone = card.get("backbone")
    if isinstance(backbone, dict):
        files += [str(backbone[k]) for k in ("file", "licence_file") if backbone.get(k)]
    return files


def artifact_files(directory: str | Path) -> list[Path]:
    """The artifact's own files in ``directory`` (the names of :data:`ARTIFACT_FILES` present), sorted.

    What export keeps and the registry copies into a model version: a stray file next to them (notes, a
    staging leftover) is not part of the artifact.
    """
    d = Path(directory)
    return sorted(d / name for name in ARTIFACT_FILES if (d / name).is_file() and not (d / name).is_symlink())
