"""The two-part artifact's runtime: a TFLite backbone (LiteRT) followed by an ONNX head, as one session.

A transfer artifact built on a backbone that cannot be converted to ONNX (BirdNET v2.4's spectrogram uses
TFLite's RFFT2D, which tf2onnx does not convert; see docs/transfer.md) ships the backbone's ``.tflite``
file next to ``model.onnx``, which then holds only the head (``embedding -> probabilities, logits``). The
card's ``backbone`` object says so (``runtime: litert``, ``file``, ``embedding_tensor``).

:func:`artifact_session` opens either kind and returns something with the three methods the predictor
uses of an onnxruntime session (``get_inputs``, ``get_outputs``, ``run``), so prediction, serving and the
registry treat both the same. LiteRT (``ai-edge-litert``) is needed only for two-part artifacts; without
it loading one raises :class:`ArtifactError` naming the extra.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vocalis.contracts.card import MODEL_FILE, ModelCard
from vocalis.contracts.runtime import onnx_session
from vocalis.errors import ArtifactError


class TfliteEmbedder:
    """Runs a TFLite model with LiteRT and reads one intermediate tensor (the embedding) per window.

    The interpreter keeps every tensor (``experimental_preserve_all_tensors``) so the embedding can be read
    after ``invoke``. It keeps one batch size (a short last batch is zero-padded): resizing the input
    re-allocates every preserved tensor, which costs more than the padded windows. A lock makes one
    instance safe to share between threads (the service's worker threads).
    """

    def __init__(
        self, path: str | Path, tensor: str, window_samples: int, *, threads: int = 1, batch_size: int = 1
    ) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ArtifactError(
                f"{path}: running this backbone needs LiteRT (ai-edge-litert): "
                "pip install 'vocalis[transfer]'"
            ) from None
        self.path = Path(path)
        if not self.path.is_file():
            raise ArtifactError(f"{self.path}: backbone model file not found")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # LiteRT warns that preserving tensors costs memory
                self._interp = Interpreter(
                    model_path=str(self.path),
                    num_threads=max(1, int(threads)),
                    experimental_preserve_all_tensors=True,
                )
        except Exception as exc:  # LiteRT raises ValueError/RuntimeError for a corrupt file
            raise ArtifactError(f"{self.path}: not a loadable TFLite model ({exc})") from None
        self._input = self._interp.get_input_details()[0]["index"]
        found = [d for d in self._interp.get_tensor_details() if d["name"] == tensor]
        if not found:
            raise ArtifactError(f"{self.path}: no tensor '{tensor}' in the model")
        self._tensor = found[0]["index"]
        self.dim = int(found[0]["shape"][-1])
        self.window_samples = int(window_samples)
        self.batch_size = max(1, int(batch_size))
        self._batch = 0
        self._lock = threading.Lock()

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """``float32 [n, window_samples]`` -> ``float32 [n, dim]``."""
        x = np.ascontiguousarray(windows, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.window_samples:
            raise ArtifactError(
                f"{self.path}: windows must be [n, {self.window_samples}], got {list(x.shape)}"
            )
        out = np.empty((len(x), self.dim), dtype=np.float32)
        b = self.batch_size
        with self._lock:
            if self._batch != b:
                self._interp.resize_tensor_input(self._input, [b, self.window_samples], strict=False)
                self._interp.allocate_tensors()
                self._batch = b
            for i in range(0, len(x), b):
                part = x[i : i + b]
                n = len(part)
                if n < b:
                    part = np.concatenate([part, np.zeros((b - n, part.shape[1]), np.float32)])
                self._interp.set_tensor(self._input, part)
                self._interp.invoke()
                out[i : i + n] = self._interp.get_tensor(self._tensor)[:n]
        return out


@dataclass(frozen=True)
class _Arg:
    """What onnxruntime's ``NodeArg`` offers the predictor: a name, a shape and a type."""

    name: str
    shape: list[Any]
    type: str = "tensor(float)"


class TwoPartSession:
    """``waveform -> backbone (LiteRT) -> embedding -> head (onnxruntime) -> probabilities, logits``.

    Quacks like an onnxruntime session for the three calls the predictor makes; the output ``embedding``
    is the backbone's.
    """

    def __init__(self, backbone: TfliteEmbedder, head: Any, n_classes: int) -> None:
        self.backbone = backbone
        self.head = head
        self._head_input = head.get_inputs()[0].name
        self._head_outputs = [o.name for o in head.get_outputs()]
        self._n_classes = n_classes

    def get_inputs(self) -> list[_Arg]:
        """One input: ``waveform [batch, window_samples]``."""
        return [_Arg("waveform", ["batch", self.backbone.window_samples])]

    def get_outputs(self) -> list[_Arg]:
        """``probabilities``, ``logits`` (from the head) and ``embedding`` (the backbone's)."""
        outs = [_Arg(name, ["batch", self._n_classes]) for name in self._head_outputs]
        return [*outs, _Arg("embedding", ["batch", self.backbone.dim])]

    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run both parts; outputs in the order asked (all of them for ``None``)."""
        names = list(output_names or [o.name for o in self.get_outputs()])
        (x,) = feeds.values()
        emb = self.backbone.embed(np.asarray(x, dtype=np.float32))
        wanted = [n for n in names if n != "embedding"]
        head_out = (
            dict(zip(wanted, self.head.run(wanted, {self._head_input: emb}), strict=True)) if wanted else {}
        )
        return [emb if n == "embedding" else head_out[n] for n in names]


def artifact_session(directory: str | Path, card: ModelCard, threads: int) -> Any:
    """The session of an artifact: onnxruntime for one ONNX graph, :class:`TwoPartSession` when the
    card's ``backbone`` names a separate LiteRT model file."""
    directory = Path(directory)
    head = onnx_session(directory / MODEL_FILE, threads)
    backbone = card.get("backbone") or {}
    if not isinstance(backbone, dict) or not backbone.get("file"):
        return head
    if backbone.get("runtime") != "litert":
        raise ArtifactError(f"{directory}: unknown backbone runtime '{backbone.get('runtime')}' in the card")
    embedder = TfliteEmbedder(
        directory / str(backbone["file"]),
        str(backbone["embedding_tensor"]),
        card.window_samples,
        threads=threads,
        batch_size=int(backbone.get("batch_size") or 1),
    )
    return TwoPartSession(embedder, head, len(card.classes))
