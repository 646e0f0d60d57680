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

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from vocalis import audio
from vocalis.contracts.cache import ClipWindows, WindowCache, staged_cache, write_tables
from vocalis.contracts.progress import Progress
from vocalis.contracts.windows import WindowSpec
from vocalis.data.prepare import PrepareSettings, split_clips, window_starts
from vocalis.data.sources import Clip, Source, labels_of
from vocalis.decode_workers import chunks, ordered_map, star
from vocalis.errors import ConfigError, DatasetError
from vocalis.transfer.backbones import Backbone, load_backbone

log = logging.getLogger(__name__)

#: bumped whenever what goes into an embedding cache changes meaning (part of the key)
EMBED_FORMAT = 1


@dataclass
class EmbeddingCache(WindowCache):
    """A complete embedding cache directory (the window-cache reader over ``embeddings.npy``)."""

    ARRAY_FILE: ClassVar[str] = "embeddings.npy"
    KIND: ClassVar[str] = "embedding cache"

    @property
    def embeddings(self) -> np.ndarray:
        """float32 ``[N, D]``, memory-mapped read-only."""
        return self.array

    @property
    def backbone(self) -> dict[str, Any]:
        """The backbone's description (name, weights digest, rate, window, embedding size)."""
        return dict(self.params["backbone"])


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
    cache_root, source, clips = split_clips(data_cfg, paths_cfg, settings)
    description = backbone.describe()
    key = embedding_key(description, settings.window_s, settings.hop_s, source.describe(), clips)
    safe_name = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in backbone.name)
    out_dir = cache_root / f"{settings.name}-{safe_name}-{key[:12]}"
    if not force and EmbeddingCache.is_current(out_dir, key):
        log.info("embedding cache is current: %s", out_dir)
        cache = EmbeddingCache.open(out_dir)
        cache.seconds = time.perf_counter() - t0
        return cache
    spec = WindowSpec(settings.window_s, settings.hop_s, backbone.sample_rate)
    global _backbone
    _backbone = backbone  # inline runs and forked workers reuse the one already loaded
    with staged_cache(out_dir, key, EmbeddingCache, force=force) as tmp:
        results = _embed_all(source, clips, settings, bb_settings, spec, progress)
        _write(tmp, settings, source.describe(), description, clips, results, key, spec)
    cache = EmbeddingCache.open(out_dir)
    cache.built = True
    cache.seconds = time.perf_counter() - t0
    if cache.meta["n_windows"] == 0:
        raise DatasetError(f"{out_dir}: no clip could be decoded; see {out_dir / 'skipped.csv'}")
    return cache


def _embed_all(
    source: Source,
    clips: list[Clip],
    settings: PrepareSettings,
    bb_settings: BackboneSettings,
    spec: WindowSpec,
    progress: Progress | None,
) -> dict[int, _ClipResult]:
    """Every clip through the backbone, chunks in worker processes (fetched only as workers free up)."""
    results: dict[int, _ClipResult] = {}
    # tiny datasets and one worker run in this process (workers=0): no process start-up
    workers = settings.workers if len(clips) >= 4 * settings.workers and settings.workers > 1 else 0
    tasks = (
        (bb_settings, spec, [(i, source.fetch(clips[i]), clips[i].path) for i in chunk])
        for chunk in chunks(range(len(clips)), settings.chunk_size)
    )
    t1 = time.perf_counter()
    # forked workers inherit the backbone already loaded here (the module's _backbone)
    for chunk_results in ordered_map(star(_embed_clips), tasks, workers=workers, method="fork"):
        for r in chunk_results:
            results[r.clip_index] = r
        if progress:
            progress("embedding", len(results), len(clips))
    n_windows = sum(len(r.starts) for r in results.values() if r.starts is not None)
    log.info(
        "embedded %d windows of %d clips in %.1f s (%d workers)",
        n_windows,
        len(clips),
        time.perf_counter() - t1,
        max(workers, 1),
    )
    return results


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
    kept = [
        results[i]
        for i in range(len(clips))
        if i in results and results[i].error is None and results[i].embeddings is not None
    ]
    vectors = [r.embeddings for r in kept if r.embeddings is not None]
    dim = int(backbone["embedding_dim"])
    np.save(tmp / "embeddings.npy", np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32))
    windows = [
        ClipWindows(r.clip_index, r.starts, spec.ends(r.starts, r.num_samples), r.duration_s, r.orig_rate)
        for r in kept
        if r.starts is not None
    ]
    write_tables(
        tmp,
        clips=clips,
        classes=labels_of(clips),
        windows=windows,
        sample_rate=spec.sample_rate,
        skipped={i: r.error for i, r in results.items() if r.error is not None},
        params={
            "backbone": backbone,
            "window_s": settings.window_s,
            "hop_s": settings.hop_s,
            "split": {"val": settings.val, "test": settings.test, "seed": settings.split_seed},
            "source": source,
        },
        key=key,
        name=settings.name,
        fmt=EMBED_FORMAT,
    )
