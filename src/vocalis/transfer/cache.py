"""The embedding cache: one backbone embedding per window of a dataset, keyed like the feature cache.

:func:`embed_from_config` lists the data source's clips, splits them exactly as :mod:`vocalis.data.prepare`
does (the same split for the same data config and seed), cuts windows with the same rule
(:func:`vocalis.data.prepare.window_starts`, at the backbone's rate and window) and runs the backbone over
them in worker processes. The key hashes the clip contents and labels, the split, the window, the backbone
(name, weights digest, rate) and the code, so a changed input, backbone or parameter builds a new cache and
nothing else does.

Layout of ``<cache_dir>/<name>-<backbone>-<hash12>/``:

- ``embeddings.npy``: float32 ``[N, D]``;
- ``manifest.csv``: one row per window, the feature cache's columns
  (:data:`vocalis.contracts.cache.MANIFEST_COLUMNS`);
- ``classes.json``, ``params.json`` (``backbone``, ``window_s``, ``hop_s``, ``split``, ``source``),
  ``skipped.csv`` (``file, reason``), ``cache.json`` (hash and counts).

A cache directory is complete or absent (built under a temporary name, renamed at the end). A file that
cannot be decoded is listed in ``skipped.csv`` and never stops the run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vocalis import audio
from vocalis.contracts.cache import MANIFEST_COLUMNS
from vocalis.contracts.progress import Progress
from vocalis.contracts.windows import WindowSpec
from vocalis.data.prepare import PrepareSettings, window_starts
from vocalis.data.sources import Clip, FileDigests, build_source, labels_of
from vocalis.data.splits import assign_splits
from vocalis.errors import CacheError, ConfigError, DatasetError
from vocalis.transfer.backbones import Backbone, load_backbone

log = logging.getLogger(__name__)

#: bumped whenever what goes into an embedding cache changes meaning (part of the key)
EMBED_FORMAT = 1
FILES = ("embeddings.npy", "manifest.csv", "classes.json", "params.json", "skipped.csv", "cache.json")
REQUIRED_FILES = tuple(f for f in FILES if f != "skipped.csv")


@dataclass
class EmbeddingCache:
    """A complete embedding cache directory. ``built``: whether this call built it."""

    dir: Path
    meta: dict[str, Any]
    classes: list[str]
    params: dict[str, Any]
    built: bool = False
    seconds: float = 0.0
    _embeddings: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def open(cls, directory: str | Path) -> EmbeddingCache:
        """Open a complete cache; :class:`CacheError` names what is missing."""
        d = Path(directory)
        if not d.is_dir():
            raise CacheError(f"{d}: embedding cache directory does not exist")
        missing = [f for f in REQUIRED_FILES if not (d / f).exists()]
        if missing:
            raise CacheError(f"{d}: incomplete embedding cache, missing {', '.join(missing)}")
        try:
            meta = json.loads((d / "cache.json").read_text())
            classes = json.loads((d / "classes.json").read_text())
            params = json.loads((d / "params.json").read_text())
        except (OSError, ValueError) as exc:
            raise CacheError(f"{d}: unreadable cache metadata ({exc})") from None
        return cls(dir=d, meta=meta, classes=list(classes), params=params)

    @property
    def embeddings(self) -> np.ndarray:
        """float32 ``[N, D]``, memory-mapped read-only."""
        if self._embeddings is None:
            self._embeddings = np.load(self.dir / "embeddings.npy", mmap_mode="r")
        return self._embeddings

    @cached_property
    def manifest(self) -> pd.DataFrame:
        """One row per window, in embedding order."""
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
        """The full key of inputs, backbone and parameters."""
        return str(self.meta["hash"])

    @property
    def backbone(self) -> dict[str, Any]:
        """The backbone's description (name, weights digest, rate, window, embedding size)."""
        return dict(self.params["backbone"])

    def split_indices(self, split: str) -> np.ndarray:
        """Window indices of one split."""
        return np.flatnonzero(self.manifest["split"].to_numpy() == split)

    def counts(self) -> pd.DataFrame:
        """Windows per class (rows) and split (columns)."""
        m = self.manifest
        table = pd.crosstab(m["label"], m["split"]).reindex(index=self.classes, fill_value=0)
        return table.reindex(columns=[s for s in ("train", "val", "test") if s in table.columns])


@dataclass(frozen=True)
class BackboneSettings:
    """The ``backbone`` config group: which backbone, and how to run it."""

    name: str
    threads: int = 1
    batch_size: int = 1

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> BackboneSettings:
        """Read ``cfg.backbone``; :class:`ConfigError` when it is missing."""
        if not cfg or not cfg.get("name"):
            raise ConfigError("backbone: none chosen; add backbone=birdnet (or backbone.name=ARTIFACT_DIR)")
        return cls(
            name=str(cfg["name"]),
            threads=max(1, int(cfg.get("threads") or 1)),
            batch_size=max(1, int(cfg.get("batch_size") or 1)),
        )

    def load(self) -> Backbone:
        """Build the backbone."""
        return load_backbone(self.name, threads=self.threads, batch_size=self.batch_size)


def code_digest() -> str:
    """Digest of the code that turns bytes into embeddings (decoder, windows, this pipeline, backbones)."""
    import vocalis.contracts.windows
    import vocalis.transfer.backbones

    h = hashlib.blake2b(digest_size=16)
    for mod in (audio, vocalis.contracts.windows, vocalis.transfer.backbones):
        h.update(Path(str(mod.__file__)).read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()


def embedding_key(
    backbone: dict[str, Any], window_s: float, hop_s: float, source: dict[str, Any], clips: Sequence[Clip]
) -> str:
    """sha256 of everything the cache's contents depend on."""
    key = {
        "format": EMBED_FORMAT,
        "code": code_digest(),
        "backbone": backbone,
        "window_s": window_s,
        "hop_s": hop_s,
        "source": source,
        "clips": [[c.clip_id, c.label, c.split, c.group, c.fingerprint] for c in clips],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


# --- worker side ------------------------------------------------------------------------------------

_backbone: Backbone | None = None


def _worker_backbone(settings: BackboneSettings) -> Backbone:
    global _backbone
    if _backbone is None:
        _backbone = settings.load()
    return _backbone


@dataclass
class _ClipResult:
    clip_index: int
    embeddings: np.ndarray | None
    starts: np.ndarray | None
    num_samples: int
    orig_rate: int
    duration_s: float
    error: str | None = None


def _embed_clips(
    settings: BackboneSettings, spec: WindowSpec, items: list[tuple[int, str | bytes, str]]
) -> list[_ClipResult]:
    """Decode, cut and embed a chunk of clips (in a worker process, or inline)."""
    bb = _worker_backbone(settings)
    w = spec.window_samples
    out: list[_ClipResult] = []
    for idx, src, name in items:
        try:
            x, info = audio.load_with_info(src, spec.sample_rate, name=name)
            n = len(x)
            starts = window_starts(spec, n)
            x = np.pad(x, (0, max(0, int(starts[-1]) + w - n)))
            windows = np.stack([x[s : s + w] for s in starts.tolist()])
            out.append(
                _ClipResult(
                    idx, bb.embed(windows), starts, n, info.sample_rate, info.frames / info.sample_rate
                )
            )
        except audio.AudioDecodeError as exc:
            out.append(_ClipResult(idx, None, None, 0, 0, 0.0, exc.reason))
        except Exception as exc:  # one bad file never stops a run
            out.append(_ClipResult(idx, None, None, 0, 0, 0.0, f"{type(exc).__name__}: {exc}"))
    return out


# --- parent side ------------------------------------------------------------------------------------


def _executor(workers: int) -> Executor | None:
    if workers <= 1:
        return None
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(workers, mp_context=mp.get_context(method))


def embed_from_config(
    data_cfg: Mapping[str, Any],
    paths_cfg: Mapping[str, Any],
    backbone_cfg: Mapping[str, Any] | None,
    *,
    seed: int = 42,
    force: bool = False,
    progress: Progress | None = None,
) -> EmbeddingCache:
    """Build (or find current) the embedding cache of ``cfg.data`` through ``cfg.backbone``.

    The window is the backbone's (``data.window_s`` must equal it); ``data.hop_s`` is the hop.
    """
    t0 = time.perf_counter()
    settings = PrepareSettings.from_config(data_cfg, seed)
    bb_settings = BackboneSettings.from_config(backbone_cfg)
    backbone = bb_settings.load()
    if abs(settings.window_s - backbone.window_s) > 1e-6:
        raise ConfigError(
            f"data.window_s: the backbone {backbone.name} takes {backbone.window_s:g} s windows, "
            f"got {settings.window_s:g} (set data.window_s={backbone.window_s:g})"
        )
    cache_root = Path(str(paths_cfg.get("cache_dir") or "data/cache")).expanduser().resolve()
    digests = FileDigests(cache_root / ".digests.json")
    source = build_source(data_cfg, digests)
    clips = source.clips()
    digests.save()
    clips = assign_splits(clips, settings.val, settings.test, settings.split_seed)
    description = backbone.describe()
    key = embedding_key(description, settings.window_s, settings.hop_s, source.describe(), clips)
    safe_name = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in backbone.name)
    out_dir = cache_root / f"{settings.name}-{safe_name}-{key[:12]}"
    if not force and _complete(out_dir, key):
        log.info("embedding cache is current: %s", out_dir)
        cache = EmbeddingCache.open(out_dir)
        cache.seconds = time.perf_counter() - t0
        return cache
    spec = WindowSpec(settings.window_s, settings.hop_s, backbone.sample_rate)
    tmp = out_dir.parent / f".tmp-{out_dir.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    results: dict[int, _ClipResult] = {}
    workers = settings.workers if len(clips) >= 4 * settings.workers else 1
    global _backbone
    _backbone = backbone  # inline runs and forked workers reuse the one already loaded
    try:
        chunks = [
            [
                (i, source.fetch(clips[i]), clips[i].path)
                for i in range(b, min(b + settings.chunk_size, len(clips)))
            ]
            for b in range(0, len(clips), settings.chunk_size)
        ]
        pool = _executor(workers)
        t1 = time.perf_counter()
        if pool is None:
            for chunk in chunks:
                for r in _embed_clips(bb_settings, spec, chunk):
                    results[r.clip_index] = r
                if progress:
                    progress("embedding", len(results), len(clips))
        else:
            with pool:
                futures = [pool.submit(_embed_clips, bb_settings, spec, chunk) for chunk in chunks]
                for fut in futures:
                    for r in fut.result():
                        results[r.clip_index] = r
                    if progress:
                        progress("embedding", len(results), len(clips))
        n_windows = sum(len(r.starts) for r in results.values() if r.starts is not None)
        log.info(
            "embedded %d windows of %d clips in %.1f s (%d workers)",
            n_windows,
            len(clips),
            time.perf_counter() - t1,
            workers,
        )
        _write(tmp, settings, source.describe(), description, clips, results, key, spec)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    cache = EmbeddingCache.open(out_dir)
    cache.built = True
    cache.seconds = time.perf_counter() - t0
    if cache.meta["n_windows"] == 0:
        raise DatasetError(f"{out_dir}: no clip could be decoded; see {out_dir / 'skipped.csv'}")
    return cache


def _complete(directory: Path, key: str) -> bool:
    try:
        return EmbeddingCache.open(directory).hash == key
    except Exception:
        return False


def _write(
    tmp: Path,
    settings: PrepareSettings,
    source: dict[str, Any],
    backbone: dict[str, Any],
    clips: list[Clip],
    results: dict[int, _ClipResult],
    key: str,
    spec: WindowSpec,
) -> None:
    classes = labels_of(clips)
    label_index = {c: i for i, c in enumerate(classes)}
    sr = spec.sample_rate
    vectors: list[np.ndarray] = []
    splits: dict[str, dict[str, int]] = {}
    index = 0
    with (tmp / "manifest.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(MANIFEST_COLUMNS)
        for i, c in enumerate(clips):
            r = results.get(i)
            if r is None or r.error is not None or r.embeddings is None or r.starts is None:
                continue
            vectors.append(r.embeddings)
            s = splits.setdefault(str(c.split), {"clips": 0, "windows": 0})
            s["clips"] += 1
            for st, end in zip(r.starts.tolist(), spec.ends(r.starts, r.num_samples).tolist(), strict=True):
                w.writerow(
                    [
                        index,
                        c.clip_id,
                        c.path,
                        c.label,
                        label_index[c.label],
                        c.split,
                        c.group,
                        round(st / sr, 6),
                        round(end / sr, 6),
                        round(r.duration_s, 6),
                        r.orig_rate,
                    ]
                )
                index += 1
                s["windows"] += 1
    dim = int(backbone["embedding_dim"])
    np.save(tmp / "embeddings.npy", np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32))
    skipped = {i: r.error for i, r in results.items() if r.error is not None}
    with (tmp / "skipped.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "reason"])
        for i in sorted(skipped):
            w.writerow([clips[i].path, skipped[i]])
    (tmp / "classes.json").write_text(json.dumps(classes, indent=2) + "\n")
    params = {
        "backbone": backbone,
        "window_s": settings.window_s,
        "hop_s": settings.hop_s,
        "split": {"val": settings.val, "test": settings.test, "seed": settings.split_seed},
        "source": source,
    }
    (tmp / "params.json").write_text(json.dumps(params, indent=2, default=str) + "\n")
    meta = {
        "hash": key,
        "name": settings.name,
        "format": EMBED_FORMAT,
        "n_windows": index,
        "n_clips": sum(s["clips"] for s in splits.values()),
        "n_skipped": len(skipped),
        "classes": classes,
        "splits": splits,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (tmp / "cache.json").write_text(json.dumps(meta, indent=2) + "\n")
