"""Prediction with an exported artifact: onnxruntime, numpy, soundfile and soxr, never torch.

``Predictor.from_dir(artifact_dir).predict(path)`` gives per-window top labels and a per-file summary; see
:mod:`vocalis.inference.predictor` and docs/contracts.md.
"""

from vocalis.contracts.card import ModelCard
from vocalis.contracts.runtime import default_threads
from vocalis.errors import ArtifactError
from vocalis.inference.predictor import FilePrediction, FileSummary, Predictor, WindowPrediction

__all__ = [
    "ArtifactError",
    "FilePrediction",
    "FileSummary",
    "ModelCard",
    "Predictor",
    "WindowPrediction",
    "default_threads",
]
