"""One file's prediction as the outside world sees it, and the one mapper from a FilePrediction to it.

The shape is shared by the HTTP API, ``vocalis predict --format json`` and the BentoML service.

``min_conf``, one meaning everywhere: the Predictor leaves the labels below ``min_conf`` out of each window's
top-k (``WindowPrediction.top``); :func:`file_result` then drops the windows that have no label left, so a
detection is a window with at least one label at or above ``min_conf``. The per-file ``summary`` always covers
every window. The CSV and Raven writers, which write one row per kept label, give the same rows.

Probabilities are rounded to 6 decimals: the model computes them in float32 (about 7 significant digits), so
more digits would be noise. pydantic only (no numpy, no torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from vocalis.inference.predictor import FilePrediction

#: decimals kept in seconds and probabilities
DECIMALS = 6


class LabelScore(BaseModel):
    """A class and its probability in one window."""

    label: str
    confidence: float
    rank: int = Field(description="1 for the window's most probable class, 2 for the next, ...")


class Detection(BaseModel):
    """One analysis window with at least one label at or above ``min_conf``."""

    start_s: float = Field(description="Window start in seconds from the start of the file.")
    end_s: float = Field(description="Window end in seconds (the last window ends at the end of the audio).")
    label: str = Field(description="Most probable class in this window.")
    confidence: float = Field(description="Its probability.")
    top: list[LabelScore] = Field(
        description="The window's top_k classes at or above min_conf, most probable first."
    )
    probs: dict[str, float] | None = Field(
        None,
        exclude_if=lambda v: v is None,
        description="Every class probability (only when asked for: `vocalis predict` include_probs).",
    )


class Summary(BaseModel):
    """Per-file aggregate of every window (``min_conf`` does not change it)."""

    top_label: str = Field(description="The class with the highest probability in any window.")
    top_confidence: float = Field(description="That probability.")
    max_probs: dict[str, float] = Field(description="Per class, the highest window probability.")
    mean_probs: dict[str, float] = Field(description="Per class, the mean window probability.")


class FileResult(BaseModel):
    """The prediction for one recording."""

    file: str | None = Field(description="The recording's name (the uploaded file name, or the path).")
    duration_s: float = Field(description="Duration of the decoded audio, in seconds.")
    sample_rate: int = Field(description="The file's own sample rate (before resampling to the model's).")
    channels: int = Field(description="The file's channels (downmixed to mono for the model).")
    window_s: float = Field(description="Window length, seconds (the model's).")
    hop_s: float = Field(description="Seconds between window starts.")
    detections: list[Detection] = Field(
        description="Windows with a label at or above min_conf, in time order."
    )
    summary: Summary


def _r(x: float) -> float:
    return round(float(x), DECIMALS)


def file_result(fp: FilePrediction, *, include_probs: bool = False) -> FileResult:
    """Map one file's prediction to the shared result shape (see the module notes for ``min_conf``).

    Args:
        fp: what :meth:`vocalis.inference.Predictor.predict` (or ``predict_stream``) returned, with
            ``min_conf`` already applied to each window's labels.
        include_probs: add every class probability to each detection.
    """
    detections = [
        Detection(
            start_s=_r(w.start_s),
            end_s=_r(w.end_s),
            label=str(w.top[0][0]),
            confidence=_r(w.top[0][1]),
            top=[LabelScore(label=str(lbl), confidence=_r(p), rank=i) for i, (lbl, p) in enumerate(w.top, 1)],
            probs=(
                {c: _r(p) for c, p in zip(fp.classes, w.probs.tolist(), strict=True)}
                if include_probs
                else None
            ),
        )
        for w in fp.windows
        if w.top  # no label left at or above min_conf: not a detection
    ]
    s = fp.summary
    return FileResult(
        file=fp.file,
        duration_s=_r(fp.duration_s),
        sample_rate=int(fp.sample_rate),
        channels=int(fp.channels),
        window_s=float(fp.window_s),
        hop_s=float(fp.hop_s),
        detections=detections,
        summary=Summary(
            top_label=str(s.top_label),
            top_confidence=_r(s.top_confidence),
            max_probs={str(k): _r(v) for k, v in s.max_probs.items()},
            mean_probs={str(k): _r(v) for k, v in s.mean_probs.items()},
        ),
    )


def file_result_json(fp: FilePrediction, *, include_probs: bool = False) -> dict[str, object]:
    """:func:`file_result` as a JSON-ready dict (what the HTTP API sends for the file)."""
    return file_result(fp, include_probs=include_probs).model_dump(mode="json")
