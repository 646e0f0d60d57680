"""The feature cache: log-mel windows of a dataset on disk, memory-mapped, with their manifest.

The one reader of a cache directory (training, evaluation, export checks and pruning all open caches with
:meth:`FeatureCache.open`); :mod:`vocalis.data.prepare` writes them.

Layout of ``<cache_dir>/<name>-<hash12>/`` (see docs/contracts.md):

- ``features.npy``: float16 ``[N, n_mels, n_frames]`` (open with ``np.load(..., mmap_mode="r")``);
- ``manifest.csv``: one row per window (``index, clip_id, path, label, label_index, split, group, start_s,
  end_s, duration_s, orig_sample_rate``);
- ``classes.json``, ``params.json``, ``skipped.csv``, ``cache.json`` (the hash and counts).

A cache directory is complete or absent: it is built under a temporary name and renamed at the end.
``skipped.csv`` is a report for people; a cache without it is still readable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vocalis.contracts.features import FeatureParams
from vocalis.contracts.windows import WindowSpec
from vocalis.errors import CacheError

#: Bumped whenever what goes into a cache changes meaning; part of the hash, so old caches are not reused.
CACHE_FORMAT = 1
MANIFEST_COLUMNS = [
    "index",
    "clip_id",
    "path",
    "label",
    "label_index",
    "split",
    "group",
    "start_s",
    "end_s",
    "duration_s",
    "orig_sample_rate",
]
#: the split names, in order (the manifest's ``split`` column holds one of them)
SPLITS = ("train", "val", "test")
#: what a cache directory holds; the reader needs all but ``skipped.csv``
FILES = ("features.npy", "manifest.csv", "classes.json", "params.json", "skipped.csv", "cache.json")
REQUIRED_FILES = tuple(f for f in FILES if f != "skipped.csv")


@dataclass
class FeatureCache:
    """A prepared feature cache. ``built`` tells whether this call built it (False: it was current)."""

    dir: Path
    meta: dict[str, Any]
    classes: list[str]
    params: dict[str, Any]
    built: bool = False
    seconds: float = 0.0
    _features: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def open(cls, directory: str | Path) -> FeatureCache:
        """Open a complete cache directory; raises :class:`CacheError` naming what is missing."""
        d = Path(directory)
        if not d.is_dir():
            raise CacheError(f"{d}: feature cache directory does not exist")
        missing = [f for f in REQUIRED_FILES if not (d / f).exists()]
        if missing:
            raise CacheError(f"{d}: incomplete feature cache, missing {', '.join(missing)}")
        try:
            meta = json.loads((d / "cache.json").read_text())
            classes = json.loads((d / "classes.json").read_text())
            params = json.loads((d / "params.json").read_text())
        except (OSError, ValueError) as exc:
            raise CacheError(f"{d}: unreadable cache metadata ({exc})") from None
        return cls(dir=d, meta=meta, classes=list(classes), params=params)

    @property
    def features(self) -> np.ndarray:
        """float16 ``[N, n_mels, n_frames]``, memory-mapped read-only."""
        if self._features is None:
            self._features = np.load(self.dir / "features.npy", mmap_mode="r")
        return self._features

    @cached_property
    def manifest(self) -> pd.DataFrame:
        """One row per window, in feature order."""
        return pd.read_csv(
            self.dir / "manifest.csv",
            dtype={"clip_id": str, "path": str, "label": str, "split": str, "group": str},
            keep_default_na=False,
        )

    @cached_property
    def skipped(self) -> pd.DataFrame:
        """``file, reason`` of every file that could not be used."""
        path = self.dir / "skipped.csv"
        if not path.is_file():
            return pd.DataFrame(columns=["file", "reason"], dtype=str)
        return pd.read_csv(path, dtype=str, keep_default_na=False)

    @property
    def hash(self) -> str:
        """The full content hash of inputs and parameters."""
        return str(self.meta["hash"])

    @property
    def window(self) -> WindowSpec:
        """The windowing the features were cut with (at the featurizer's sample rate)."""
        return WindowSpec(
            float(self.params["window_s"]),
            float(self.params["hop_s"]),
            int(self.params["features"]["sample_rate"]),
        )

    @property
    def feature_params(self) -> FeatureParams:
        """The featurizer parameters the features were computed with."""
        return FeatureParams.from_dict(self.params["features"])

    def audio_path(self, manifest_path: str) -> Path:
        """Where the recording a manifest row names is: absolute paths as they are, relative ones against
        the working directory, then the cache directory and the two above it (a moved project)."""
        p = Path(manifest_path)
        if p.is_absolute() or p.exists():
            return p
        for base in (self.dir, self.dir.parent, self.dir.parent.parent):
            if (base / p).exists():
                return base / p
        return p

    def split_indices(self, split: str) -> np.ndarray:
        """Window indices of one split."""
        return np.flatnonzero(self.manifest["split"].to_numpy() == split)

    def counts(self) -> pd.DataFrame:
        """Windows per class (rows) and split (columns)."""
        m = self.manifest
        table = pd.crosstab(m["label"], m["split"]).reindex(index=self.classes, fill_value=0)
        return table.reindex(columns=[s for s in SPLITS if s in table.columns])
