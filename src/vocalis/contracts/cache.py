"""Window caches: one array row per window of a dataset on disk, memory-mapped, with its manifest.

Two kinds share this one layout, reader and writer, and differ only in the array file and the key that
fingerprints their contents:

- the **feature cache** (:class:`FeatureCache`, ``features.npy``: float16 ``[N, n_mels, n_frames]``),
  written by :mod:`vocalis.data.prepare`, read by training, evaluation, export checks and pruning;
- the **embedding cache** (:class:`vocalis.transfer.cache.EmbeddingCache`, ``embeddings.npy``: float32
  ``[N, D]``), written by ``vocalis data embed``, read by transfer heads.

Layout of a cache directory (see docs/contracts.md):

- the array file (open with ``np.load(..., mmap_mode="r")``);
- ``manifest.csv``: one row per window (``index, clip_id, path, label, label_index, split, group, start_s,
  end_s, duration_s, orig_sample_rate``);
- ``classes.json``, ``params.json``, ``skipped.csv``, ``cache.json`` (the key and counts).

A cache directory is complete or absent: :func:`staged_cache` builds it under a temporary name and renames
it at the end. ``skipped.csv`` is a report for people; a cache without it is still readable.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self

import numpy as np

from vocalis.contracts.features import FeatureParams
from vocalis.contracts.windows import WindowSpec
from vocalis.errors import CacheError

if TYPE_CHECKING:  # pandas is imported when a table is read: building a cache never needs it
    import pandas as pd

log = logging.getLogger(__name__)

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
#: the files of a cache directory besides its array file; the reader needs all but ``skipped.csv``
TABLE_FILES = ("manifest.csv", "classes.json", "params.json", "skipped.csv", "cache.json")
#: what a feature cache directory holds
FILES = ("features.npy", *TABLE_FILES)
REQUIRED_FILES = tuple(f for f in FILES if f != "skipped.csv")


@dataclass
class WindowCache:
    """A complete cache directory (the one reader); subclasses name the array file and the cache kind.

    ``built`` tells whether this call built it (False: it was current); ``seconds`` what it took.
    """

    #: the array file, one row per window
    ARRAY_FILE: ClassVar[str] = "features.npy"
    #: what messages call it ("feature cache", "embedding cache")
    KIND: ClassVar[str] = "feature cache"

    dir: Path
    meta: dict[str, Any]
    classes: list[str]
    params: dict[str, Any]
    built: bool = False
    seconds: float = 0.0
    _array: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def required_files(cls) -> tuple[str, ...]:
        """The files :meth:`open` needs."""
        return (cls.ARRAY_FILE, *(f for f in TABLE_FILES if f != "skipped.csv"))

    @classmethod
    def open(cls, directory: str | Path) -> Self:
        """Open a complete cache directory; raises :class:`CacheError` naming what is missing."""
        d = Path(directory)
        if not d.is_dir():
            raise CacheError(f"{d}: {cls.KIND} directory does not exist")
        missing = [f for f in cls.required_files() if not (d / f).exists()]
        if missing:
            raise CacheError(f"{d}: incomplete {cls.KIND}, missing {', '.join(missing)}")
        try:
            meta = json.loads((d / "cache.json").read_text())
            classes = json.loads((d / "classes.json").read_text())
            params = json.loads((d / "params.json").read_text())
        except (OSError, ValueError) as exc:
            raise CacheError(f"{d}: unreadable cache metadata ({exc})") from None
        return cls(dir=d, meta=meta, classes=list(classes), params=params)

    @classmethod
    def is_current(cls, directory: str | Path, key: str) -> bool:
        """Whether ``directory`` holds a complete cache of this kind for ``key`` (its fingerprint)."""
        try:
            return cls.open(directory).hash == key
        except Exception:  # absent, incomplete or unreadable: not current
            return False

    @property
    def array(self) -> np.ndarray:
        """The array file, memory-mapped read-only (rows in manifest order)."""
        if self._array is None:
            self._array = np.load(self.dir / self.ARRAY_FILE, mmap_mode="r")
        return self._array

    @cached_property
    def manifest(self) -> pd.DataFrame:
        """One row per window, in array order."""
        import pandas as pd

        return pd.read_csv(
            self.dir / "manifest.csv",
            dtype={"clip_id": str, "path": str, "label": str, "split": str, "group": str},
            keep_default_na=False,
        )

    @cached_property
    def skipped(self) -> pd.DataFrame:
        """``file, reason`` of every file that could not be used."""
        import pandas as pd

        path = self.dir / "skipped.csv"
        if not path.is_file():
            return pd.DataFrame(columns=["file", "reason"], dtype=str)
        return pd.read_csv(path, dtype=str, keep_default_na=False)

    @property
    def hash(self) -> str:
        """The full content hash of inputs and parameters."""
        return str(self.meta["hash"])

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

    def counts(self) -> dict[str, dict[str, int]]:
        """Windows per split (the splits present, in :data:`SPLITS` order) and class (every class, zeros
        included): ``{split: {label: n}}``. Read with the csv module: a summary needs no pandas import."""
        tally: Counter[tuple[str, str]] = Counter()
        with (self.dir / "manifest.csv").open(newline="") as fh:
            for row in csv.DictReader(fh):
                tally[row["split"], row["label"]] += 1
        present = {split for split, _ in tally}
        return {s: {c: tally[s, c] for c in self.classes} for s in SPLITS if s in present}

    def skip_reasons(self) -> Counter[str]:
        """How many files were skipped for each reason, a reason's trailing parenthesised detail (the
        decoder's own message) left out so that like failures count together."""
        path = self.dir / "skipped.csv"
        if not path.is_file():
            return Counter()
        with path.open(newline="") as fh:
            return Counter(re.sub(r"\s*\(.*\)$", "", row["reason"]) for row in csv.DictReader(fh))


@dataclass
class FeatureCache(WindowCache):
    """A prepared feature cache (log-mel windows)."""

    ARRAY_FILE: ClassVar[str] = "features.npy"
    KIND: ClassVar[str] = "feature cache"

    @property
    def features(self) -> np.ndarray:
        """float16 ``[N, n_mels, n_frames]``, memory-mapped read-only."""
        return self.array

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


# --- the writer --------------------------------------------------------------------------------------


class CacheClip(Protocol):
    """What the writer reads of a clip (:class:`vocalis.data.sources.Clip` has it)."""

    @property
    def clip_id(self) -> str:
        """The clip's identifier."""

    @property
    def path(self) -> str:
        """Where its audio is (as the source lists it)."""

    @property
    def label(self) -> str:
        """Its class."""

    @property
    def split(self) -> str | None:
        """train, val or test."""

    @property
    def group(self) -> str | None:
        """The group that keeps related clips in one split."""


@dataclass(frozen=True)
class ClipWindows:
    """The windows one clip gave: start and end samples at the cache's rate, its duration and rate."""

    clip_index: int
    starts: np.ndarray
    ends: np.ndarray
    duration_s: float
    orig_sample_rate: int


def write_tables(
    directory: Path,
    *,
    clips: Sequence[CacheClip],
    classes: list[str],
    windows: Iterable[ClipWindows],
    sample_rate: int,
    skipped: Mapping[int, str],
    params: dict[str, Any],
    key: str,
    name: str,
    fmt: int,
) -> dict[str, Any]:
    """Write ``manifest.csv``, ``skipped.csv``, ``classes.json``, ``params.json`` and ``cache.json``.

    ``windows`` lists the clips that were kept, in array-row order; ``skipped`` maps a clip index to why
    it was not. Returns the ``cache.json`` written (the key, counts per split, when).
    """
    label_index = {c: i for i, c in enumerate(classes)}
    splits: dict[str, dict[str, int]] = {}
    index = 0
    with (directory / "manifest.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(MANIFEST_COLUMNS)
        for cw in windows:
            c = clips[cw.clip_index]
            s = splits.setdefault(str(c.split), {"clips": 0, "windows": 0})
            s["clips"] += 1
            for st, end in zip(cw.starts.tolist(), cw.ends.tolist(), strict=True):
                w.writerow(
                    [
                        index,
                        c.clip_id,
                        c.path,
                        c.label,
                        label_index[c.label],
                        c.split,
                        c.group,
                        round(st / sample_rate, 6),
                        round(end / sample_rate, 6),
                        round(cw.duration_s, 6),
                        cw.orig_sample_rate,
                    ]
                )
                index += 1
                s["windows"] += 1
    with (directory / "skipped.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "reason"])
        for i in sorted(skipped):
            w.writerow([clips[i].path, skipped[i]])
    (directory / "classes.json").write_text(json.dumps(classes, indent=2) + "\n")
    (directory / "params.json").write_text(json.dumps(params, indent=2, default=str) + "\n")
    meta = {
        "hash": key,
        "name": name,
        "format": fmt,
        "n_windows": index,
        "n_clips": sum(s["clips"] for s in splits.values()),
        "n_skipped": len(skipped),
        "classes": classes,
        "splits": splits,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (directory / "cache.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


@contextmanager
def staged_cache(
    out_dir: Path, key: str, kind: type[WindowCache] = FeatureCache, *, force: bool = False
) -> Iterator[Path]:
    """Build a cache directory atomically: yields an empty temporary folder next to ``out_dir``.

    When the block ends the folder is renamed to ``out_dir`` (replacing an incomplete or stale leftover),
    unless another run finished the same cache (``key``) meanwhile and ``force`` is off: then it is
    dropped. When the block raises, the folder is removed and nothing under ``out_dir`` changes.
    """
    tmp = out_dir.parent / f".tmp-{out_dir.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if not force and kind.is_current(out_dir, key):
            log.info("%s: another run built the same %s meanwhile", out_dir, kind.KIND)
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            if out_dir.exists():  # an incomplete or foreign leftover under our name
                shutil.rmtree(out_dir)
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
