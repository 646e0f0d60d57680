"""The drift reference: what the served traffic should look like, computed on a run's training split.

For each training recording (up to ``max_clips``, drawn at random) the reference holds exactly what the
service logs for a served file: the audio summary features (:func:`vocalis.contracts.audio_summary.summarize`
of the mono waveform at the model's rate), the model's top label, its confidence, the mean per-class
probabilities and (models with an ``embedding`` output) the projected mean embedding
(:mod:`vocalis.monitoring.embedding`), as produced by the exported ONNX model itself through
:class:`vocalis.inference.Predictor`.
Computing it through the served model and the served summary, not through the training code, means a
drift report compares like with like: a difference is in the data, not in two implementations.

Stored in the artifact as ``reference.parquet`` (one row per recording) and ``reference.json`` (what it
was computed from). Artifacts without them keep working; drift then says there is no reference.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from vocalis import audio
from vocalis.contracts.audio_summary import AudioSummary, summarize
from vocalis.errors import CacheError, VocalisError
from vocalis.monitoring.embedding import EMBEDDING_COLUMNS, describe_projection, embedding_summary
from vocalis.monitoring.errors import NoReferenceError

if TYPE_CHECKING:
    from vocalis.inference import Predictor

log = logging.getLogger(__name__)

REFERENCE_FILE = "reference.parquet"
REFERENCE_META = "reference.json"
#: the audio summary columns, in the prediction log's names
SUMMARY_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(AudioSummary))
#: per-class probability columns are named PROB_PREFIX + class name
PROB_PREFIX = "prob:"


@dataclass(frozen=True)
class Reference:
    """A loaded drift reference: one row per training recording, and where it came from."""

    frame: pd.DataFrame
    meta: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        """The model's class names, in output order."""
        return list(self.meta.get("classes", []))

    def __len__(self) -> int:
        return len(self.frame)


def resolve_cache_dir(source: str | Path) -> Path:
    """The feature cache behind ``source``: a cache directory itself, or a run directory (``run.json``)."""
    path = Path(source)
    if (path / "manifest.csv").is_file():
        return path
    run_json = path / "run.json"
    if run_json.is_file():
        cache_dir = json.loads(run_json.read_text()).get("cache_dir")
        if cache_dir and (Path(cache_dir) / "manifest.csv").is_file():
            return Path(cache_dir)
        raise CacheError(f"{run_json}: cache_dir {cache_dir!r} has no manifest.csv")
    raise CacheError(f"{path}: neither a feature cache (manifest.csv) nor a run directory (run.json)")


def build_reference(
    source: str | Path,
    artifact_dir: str | Path,
    *,
    split: str = "train",
    max_clips: int = 1000,
    seed: int = 0,
) -> Path:
    """Compute the drift reference of ``artifact_dir``'s model on ``split`` of ``source``'s recordings.

    Args:
        source: a run directory (its ``run.json`` names the cache) or a feature-cache directory.
        artifact_dir: the exported model (``model.onnx`` + ``model.json``); the reference is written into it.
        split: which split of the cache manifest the recordings come from.
        max_clips: recordings at most (drawn at random with ``seed``), bounding the export's extra time.
        seed: seed of that draw.

    Returns the path of ``reference.parquet``. A recording that cannot be decoded is skipped with a
    warning; none decodable raises :class:`CacheError`.
    """
    from vocalis.inference import Predictor

    cache_dir = resolve_cache_dir(source)
    artifact = Path(artifact_dir)
    manifest = pd.read_csv(cache_dir / "manifest.csv")
    clips = manifest[manifest["split"] == split].drop_duplicates("path")
    if clips.empty:
        raise CacheError(f"{cache_dir / 'manifest.csv'}: no recording in split '{split}'")
    if len(clips) > max_clips:
        clips = clips.sample(n=max_clips, random_state=seed)
    predictor = Predictor.from_dir(artifact)
    sr = int(predictor.sample_rate)
    classes = [str(c) for c in predictor.classes]

    rows: list[dict[str, Any]] = []
    skipped = 0
    embedding_dims = 0
    for clip in clips.itertuples(index=False):
        path = Path(str(clip.path))
        try:
            wav = audio.load(path, sr)
            row, embedding_dims = traffic_row(predictor, wav, name=str(path))
        except (VocalisError, ValueError, OSError) as exc:  # one bad file never stops the reference
            log.warning("reference: skipping %s (%s)", path, exc)
            skipped += 1
            continue
        rows.append({"path": str(path), "label": str(clip.label), **row})
    if not rows:
        raise CacheError(f"{cache_dir}: none of the {len(clips)} '{split}' recordings could be decoded")

    frame = pd.DataFrame(rows)
    out = artifact / REFERENCE_FILE
    frame.to_parquet(out, index=False)
    meta = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "unit": "recording",
        "split": split,
        "n": len(frame),
        "skipped": skipped,
        "seed": seed,
        "cache_dir": str(cache_dir),
        "model_version": str(predictor.version),
        "sample_rate": sr,
        "classes": classes,
        "summary_columns": list(SUMMARY_COLUMNS),
        "embedding": describe_projection(embedding_dims) if embedding_dims else None,
        "label_counts": {k: int(v) for k, v in frame["label"].value_counts().sort_index().items()},
        "top_label_counts": {k: int(v) for k, v in frame["top_label"].value_counts().sort_index().items()},
    }
    (artifact / REFERENCE_META).write_text(json.dumps(meta, indent=2) + "\n")
    log.info("drift reference: %d %s recordings -> %s (%d skipped)", len(frame), split, out, skipped)
    return out


def traffic_row(
    predictor: Predictor, wav: np.ndarray, *, name: str = "<waveform>"
) -> tuple[dict[str, Any], int]:
    """What the service logs for one mono waveform at the model's rate, as a reference/traffic row.

    The audio summary, top label, confidence, mean per-class probabilities and, when the model has an
    ``embedding`` output, the projected mean embedding (:data:`EMBEDDING_COLUMNS`, one session run per
    batch either way). Returns the row and the embedding's width (0 without one).
    """
    sr = predictor.sample_rate
    fp = predictor.predict(wav, top_k=1, name=name, embedding=predictor.has_embedding)
    row: dict[str, Any] = {"duration_s": len(wav) / sr}
    row.update(summarize(wav, sr).to_dict())
    row["top_label"] = str(fp.summary.top_label)
    row["confidence"] = float(fp.summary.top_confidence)
    for cls in predictor.classes:
        row[PROB_PREFIX + cls] = float(fp.summary.mean_probs.get(cls, 0.0))
    coords = embedding_summary(fp.embedding)
    if coords is not None:
        row.update(zip(EMBEDDING_COLUMNS, coords, strict=True))
    return row, 0 if fp.embedding is None else int(fp.embedding.size)


def try_build_reference(source: str | Path | None, artifact_dir: str | Path, **kwargs: Any) -> Path | None:
    """:func:`build_reference` for the export step: never fails an export, logs why there is no reference."""
    if source is None:
        log.warning("no feature cache at hand: the artifact gets no drift reference")
        return None
    try:
        return build_reference(source, artifact_dir, **kwargs)
    except (VocalisError, OSError, ValueError, KeyError) as exc:
        log.warning("the artifact gets no drift reference: %s", exc)
        return None


def load_reference(artifact_dir: str | Path) -> Reference:
    """Read the drift reference of an artifact; :class:`NoReferenceError` when it has none."""
    artifact = Path(artifact_dir)
    path = artifact / REFERENCE_FILE
    if not path.is_file():
        raise NoReferenceError(
            f"{artifact}: the artifact has no drift reference ({REFERENCE_FILE}); export it again with "
            "this version of vocalis, or run `vocalis monitor reference RUN ARTIFACT`"
        )
    frame = pd.read_parquet(path)
    meta_path = artifact / REFERENCE_META
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if not meta.get("classes"):
        meta["classes"] = [c[len(PROB_PREFIX) :] for c in frame.columns if c.startswith(PROB_PREFIX)]
    missing = [c for c in (*SUMMARY_COLUMNS, "top_label") if c not in frame.columns]
    if missing:
        raise NoReferenceError(f"{path}: not a drift reference (missing columns {missing})")
    return Reference(frame, meta)


def probability_matrix(frame: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """The ``[n, n_classes]`` per-class probabilities of a reference frame."""
    return frame[[PROB_PREFIX + c for c in classes]].to_numpy(dtype=np.float64)
