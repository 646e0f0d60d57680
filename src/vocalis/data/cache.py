"""The feature cache: log-mel windows of a dataset on disk, memory-mapped, with their manifest.

Layout of ``<cache_dir>/<name>-<hash12>/`` (see docs/contracts.md):

- ``features.npy``: float16 ``[N, n_mels, n_frames]`` (open with ``np.load(..., mmap_mode="r")``);
- ``manifest.csv``: one row per window (``index, clip_id, path, label, label_index, split, group, start_s,
  end_s, duration_s, orig_sample_rate``);
- ``classes.json``, ``params.json``, ``skipped.csv``, ``cache.json`` (the hash and counts).

A cache directory is complete or absent: it is built under a temporary name and renamed at the end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vocalis.errors import CacheError
from vocalis.windows import WindowSpec

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
FILES = ("features.npy", "manifest.csv", "classes.json", "params.json", "skipped.csv", "cache.json")


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
        missing = [f for f in FILES if not (d / f).exists()]
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
        return pd.read_csv(self.dir / "skipped.csv", dtype=str, keep_default_na=False)

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
    def feature_params(self) -> Any:
        """The :class:`vocalis.features.FeatureParams` (imports torch)."""
        from vocalis.features import FeatureParams

        return FeatureParams.from_dict(self.params["features"])

    def split_indices(self, split: str) -> np.ndarray:
        """Window indices of one split."""
        return np.flatnonzero(self.manifest["split"].to_numpy() == split)

    def counts(self) -> pd.DataFrame:
        """Windows per class (rows) and split (columns)."""
        m = self.manifest
        table = pd.crosstab(m["label"], m["split"]).reindex(index=self.classes, fill_value=0)
        return table.reindex(columns=[s for s in ("train", "val", "test") if s in table.columns])
