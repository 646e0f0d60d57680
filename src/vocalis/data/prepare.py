"""Data preparation: a dataset source -> decoded, resampled, windowed, featurized -> a feature cache.

The pipeline, :func:`prepare_from_config`:

1. list the source's clips and fingerprint their contents (digests memoised by size and mtime);
2. assign group-aware stratified splits;
3. hash everything that determines the result (clip contents, labels, splits, groups, window, featurizer
   and source parameters); a complete cache under that hash means there is nothing to do;
4. read every header (in parallel) to count windows, then preallocate ``features.npy`` as a float16
   memory map of exactly that size;
5. decode, resample, cut and featurize chunks of clips in worker processes, each writing its rows straight
   into the memory map: memory is bounded by ``chunk_size`` clips per worker, not by the dataset;
6. write the manifest and metadata, then rename the temporary directory into place (atomic).

A file that cannot be decoded is skipped and listed in ``skipped.csv``; it never stops the run. Short clips
follow the project's one rule (:func:`vocalis.contracts.windows.require_featurizable`): only a clip with no
samples at the featurizer's rate is refused; any other is zero-padded to a window.

Windows: a clip shorter than one window gives one zero-padded window. A longer clip gives a window every
hop; a trailing partial window is zero-padded, and dropped when it holds less than half a window of audio
(it would be mostly padding), unless it is the clip's only window.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from threadpoolctl import threadpool_limits

from vocalis import audio
from vocalis.contracts.cache import CACHE_FORMAT, ClipWindows, FeatureCache, staged_cache, write_tables
from vocalis.contracts.features import FeatureParams
from vocalis.contracts.progress import Progress
from vocalis.contracts.windows import WindowSpec, require_featurizable
from vocalis.data.featurize import ClipFeaturizer, shares_frames
from vocalis.data.sources import Clip, FileDigests, Source, build_source, labels_of
from vocalis.data.splits import assign_splits
from vocalis.decode_workers import chunks, cpu_count, keep_freed_memory, ordered_map, star
from vocalis.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrepareSettings:
    """The parameters of one preparation run, read from ``cfg.data``."""

    name: str
    features: FeatureParams
    window_s: float
    hop_s: float
    val: float
    test: float
    split_seed: int
    workers: int
    chunk_size: int
    batch_size: int

    @classmethod
    def from_config(cls, data_cfg: Mapping[str, Any], seed: int = 42) -> PrepareSettings:
        """Read and check the ``data`` config group.

        Every key has its one default in ``configs/data/base.yaml``, which each data source extends: a key
        missing here is a config that does not extend it, and is named in a :class:`ConfigError`.
        """

        def need(mapping: Mapping[str, Any], key: str, where: str = "data") -> Any:
            if key not in mapping:
                raise ConfigError(
                    f"{where}.{key} is missing (data configs extend data/base.yaml, which sets it)"
                )
            return mapping[key]

        feats = dict(need(data_cfg, "features") or {})
        unknown = set(feats) - set(FeatureParams.field_names())
        if unknown:
            raise ConfigError(f"data.features: unknown key(s) {sorted(unknown)}")
        try:
            fp = FeatureParams(**feats)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"data.features: {exc}") from None
        split = dict(need(data_cfg, "split") or {})
        window_s = float(need(data_cfg, "window_s"))
        hop = need(data_cfg, "hop_s")
        hop_s = float(hop) if hop is not None else window_s  # null hop: windows without overlap
        if window_s <= 0 or hop_s <= 0:
            raise ConfigError(f"data.window_s and data.hop_s must be positive, got {window_s}, {hop_s}")
        workers = need(data_cfg, "prepare_workers")
        n_workers = int(workers) if workers not in (None, "auto", 0) else cpu_count()
        split_seed = need(split, "seed", "data.split")
        return cls(
            name=str(need(data_cfg, "name")),
            features=fp,
            window_s=window_s,
            hop_s=hop_s,
            val=float(need(split, "val", "data.split")),
            test=float(need(split, "test", "data.split")),
            split_seed=int(split_seed if split_seed is not None else seed),
            workers=max(1, n_workers),
            chunk_size=max(1, int(need(data_cfg, "chunk_size"))),
            batch_size=max(1, int(need(data_cfg, "prepare_batch_size"))),
        )

    @property
    def spec(self) -> WindowSpec:
        """Windows at the featurizer's sample rate."""
        return WindowSpec(self.window_s, self.hop_s, self.features.sample_rate)


def window_starts(spec: WindowSpec, num_samples: int) -> np.ndarray:
    """Training window starts: :meth:`WindowSpec.starts`, less a trailing window under half full."""
    starts = spec.starts(num_samples)
    if len(starts) > 1 and num_samples - int(starts[-1]) < spec.window_samples / 2:
        starts = starts[:-1]
    return starts


def code_digest() -> str:
    """Digest of the source code that turns bytes into features (decoder, windows, featurizer, pipeline).

    Part of the cache key: a fixed decoder bug or a changed featurizer must rebuild caches made with the
    old code, even though no input file and no parameter changed.
    """
    from importlib.util import find_spec

    h = hashlib.blake2b(digest_size=16)
    # the files, not the modules: vocalis.features would import torch, which preparation never needs
    modules = (
        "vocalis.audio",
        "vocalis.mel",
        "vocalis.contracts.features",
        "vocalis.features",
        "vocalis.data.featurize",
        "vocalis.contracts.windows",
    )
    for name in modules:
        spec = find_spec(name)
        if spec is None or spec.origin is None:  # pragma: no cover - a broken installation
            raise RuntimeError(f"cannot find the source of {name}")
        h.update(Path(spec.origin).read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()


def cache_key(settings: PrepareSettings, source: Source, clips: Sequence[Clip]) -> str:
    """sha256 of everything the cache's contents depend on."""
    key = {
        "format": CACHE_FORMAT,
        "code": code_digest(),
        "features": settings.features.to_dict(),
        "window_s": settings.window_s,
        "hop_s": settings.hop_s,
        "source": source.describe(),
        "clips": [[c.clip_id, c.label, c.split, c.group, c.fingerprint] for c in clips],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


# --- worker side ------------------------------------------------------------------------------------

_featurizer: ClipFeaturizer | None = None


def _get_featurizer(features: FeatureParams) -> ClipFeaturizer:
    """This process's featurizer for ``features`` (built once per worker)."""
    global _featurizer
    if _featurizer is None or _featurizer.params != features:
        _featurizer = ClipFeaturizer(features)
    return _featurizer


# Files on disk are opened by libsndfile itself (native reads): through a Python file object or bytes, as
# vocalis.audio opens them to handle every odd case, each block libsndfile reads is a Python callback, which
# cost about 20 % of a short clip's decoding here. Anything else (any MPEG stream, MP3 in WAV included, a
# damaged header, a rate out of range, NaN samples, a pipe) goes through vocalis.audio, which decodes it or
# names the reason; the samples of a file both can read are the same libsndfile decode (checked equal on
# a third of the real set, 292 files, and on synthetic clips).


def _regular_file(src: str | bytes) -> bool:
    if not isinstance(src, str):
        return False
    try:
        return stat.S_ISREG(os.stat(src).st_mode)
    except OSError:
        return False


def _native_ok(snd: sf.SoundFile) -> bool:
    # MPEG streams (MP3, MP3 in WAV) go through vocalis.audio: it unwraps MP3-in-WAV, which a native open
    # decodes with other padding (checked on the real set: 0.75 k samples more, up to 0.1 apart)
    rate_ok = audio.MIN_SAMPLE_RATE <= snd.samplerate <= audio.MAX_SAMPLE_RATE
    return rate_ok and snd.channels >= 1 and not str(snd.subtype).startswith("MPEG")


def _header(src: str | bytes, name: str) -> tuple[int, int]:
    """``(frames, sample_rate)`` from the header."""
    if _regular_file(src):
        try:
            with sf.SoundFile(src) as snd:
                if _native_ok(snd) and snd.frames > 0:
                    return int(snd.frames), int(snd.samplerate)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError):
            pass
    hdr = audio.info(src, name=name)
    return hdr.frames, hdr.sample_rate


def _load(src: str | bytes, sample_rate: int, name: str) -> np.ndarray:
    """The clip's mono waveform at ``sample_rate`` (:func:`vocalis.audio.load`'s samples)."""
    if _regular_file(src):
        try:
            with sf.SoundFile(src) as snd:
                if _native_ok(snd):
                    rate = int(snd.samplerate)
                    x = snd.read(dtype="float32", always_2d=True)
                    if x.size and np.isfinite(x).all():
                        return audio.resample(audio.to_mono(x), rate, sample_rate)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError):
            pass
    return audio.load(src, sample_rate, name=name)


def _probe(
    features: FeatureParams, items: list[tuple[int, str | bytes, str]]
) -> list[tuple[int, int, int, str | None]]:
    """Header pass: ``(clip index, frames, sample_rate, error)`` per item."""
    out: list[tuple[int, int, int, str | None]] = []
    for idx, src, name in items:
        try:
            frames, rate = _header(src, name)
            if frames <= 0:
                raise audio.AudioDecodeError(name, "contains no audio samples")
            require_featurizable(round(frames * features.sample_rate / rate), name)
            out.append((idx, frames, rate, None))
        except audio.AudioDecodeError as exc:
            out.append((idx, 0, 0, exc.reason))
        except Exception as exc:  # one bad file never stops a run
            out.append((idx, 0, 0, f"{type(exc).__name__}: {exc}"))
    return out


@dataclass(frozen=True)
class _Job:
    clip_index: int
    source: str | bytes
    name: str
    num_samples: int
    starts: np.ndarray
    row: int


def _featurize(
    features_path: str, features: FeatureParams, spec: WindowSpec, batch_size: int, jobs: list[_Job]
) -> list[tuple[int, str | None]]:
    """Decode, cut and featurize a chunk of clips, writing rows into the memory-mapped features file.

    Each clip's windows go through :meth:`ClipFeaturizer.windows` (each STFT frame once, ``batch_size``
    windows a call); a window hop off the featurizer's frame grid featurizes window by window. Either way
    the numbers are ``LogMel.forward``'s on the stacked windows, to float32 rounding.
    """
    mm = np.load(features_path, mmap_mode="r+")
    net = _get_featurizer(features)
    w = spec.window_samples
    share = shares_frames(features, w, spec.hop_samples)
    out: list[tuple[int, str | None]] = []
    for job in jobs:
        try:
            x = _load(job.source, features.sample_rate, job.name)
        except audio.AudioDecodeError as exc:
            out.append((job.clip_index, exc.reason))
            continue
        except Exception as exc:  # one bad file never stops a run
            out.append((job.clip_index, f"{type(exc).__name__}: {exc}"))
            continue
        # header frame counts (MP3 especially) can be off by a few samples: keep the length that the
        # window count was computed from (the featurizer reads samples past the end, and the last
        # window's padding, as zeros)
        x = x[: job.num_samples]
        step = batch_size if share else 1
        for b in range(0, len(job.starts), step):
            feats = net.windows(x, job.starts[b : b + step], w, job.num_samples)
            mm[job.row + b : job.row + b + len(feats)] = feats
        out.append((job.clip_index, None))
    mm.flush()
    return out


# --- parent side ------------------------------------------------------------------------------------


def split_clips(
    data_cfg: Mapping[str, Any], paths_cfg: Mapping[str, Any], settings: PrepareSettings
) -> tuple[Path, Source, list[Clip]]:
    """The cache root, the data source and its clips, fingerprinted (digests kept under the cache root)
    and split: what every cache of ``cfg.data`` (features, embeddings) starts from."""
    cache_root = Path(str(paths_cfg.get("cache_dir") or "data/cache")).expanduser().resolve()
    digests = FileDigests(cache_root / ".digests.json")
    source = build_source(data_cfg, digests)
    clips = source.clips()
    digests.save()
    return cache_root, source, assign_splits(clips, settings.val, settings.test, settings.split_seed)


def prepare_from_config(
    data_cfg: Mapping[str, Any],
    paths_cfg: Mapping[str, Any],
    *,
    seed: int = 42,
    force: bool = False,
    progress: Progress | None = None,
) -> FeatureCache:
    """Build (or find current) the feature cache that ``cfg.data`` describes, under ``cfg.paths.cache_dir``.

    Returns the :class:`FeatureCache`; its ``built`` is False when the cache was already current.
    """
    t0 = time.perf_counter()
    settings = PrepareSettings.from_config(data_cfg, seed)
    cache_root, source, clips = split_clips(data_cfg, paths_cfg, settings)
    key = cache_key(settings, source, clips)
    log.info("listed, fingerprinted and split %d clips in %.2f s", len(clips), time.perf_counter() - t0)
    out_dir = cache_root / f"{settings.name}-{key[:12]}"
    if not force and FeatureCache.is_current(out_dir, key):
        log.info("cache is current: %s", out_dir)
        cache = FeatureCache.open(out_dir)
        cache.seconds = time.perf_counter() - t0
        return cache
    if out_dir.exists():
        log.warning("%s: incomplete or stale cache directory, rebuilding", out_dir)
    cache = _build(settings, source, clips, key, out_dir, progress, force)
    cache.seconds = time.perf_counter() - t0
    return cache


def _build(
    settings: PrepareSettings,
    source: Source,
    clips: list[Clip],
    key: str,
    out_dir: Path,
    progress: Progress | None,
    force: bool = False,
) -> FeatureCache:
    from numpy.lib.format import open_memmap

    fp = settings.features
    spec = settings.spec
    sr = fp.sample_rate
    n_frames = fp.n_frames(spec.window_samples)
    skipped: dict[int, str] = {}
    # bytes sources (parquet rows) are fetched in the parent per chunk; file sources pass paths.
    # Workers fork: this process holds no thread pool a child could inherit locked (torch is not
    # imported for preparation), and a forked worker starts in milliseconds with the modules loaded.
    workers = settings.workers if len(clips) >= 4 * settings.workers else 0
    if workers == 1:
        workers = 0  # one worker: run in this process, no process start-up
    pool_args: dict[str, Any] = {"workers": workers, "ahead": 2 * max(1, workers), "method": "fork"}
    _get_featurizer(fp)  # built (scipy.fft imported) once here, inherited by the forked workers
    if workers == 0:
        keep_freed_memory()  # what a worker does at its start (decode_workers.worker_start)
    # built in a temporary folder renamed into place when complete (contracts.cache.staged_cache)
    with staged_cache(out_dir, key, FeatureCache, force=force) as tmp:
        with threadpool_limits(1):  # the inline case's BLAS; workers set their own
            # 1. headers
            headers: dict[int, tuple[int, int]] = {}
            done = 0
            probe_tasks = (
                (fp, [(i, source.fetch(clips[i]), clips[i].path) for i in chunk])
                for chunk in chunks(range(len(clips)), max(settings.chunk_size, 64))
            )
            t1 = time.perf_counter()
            for results in ordered_map(star(_probe), probe_tasks, **pool_args):
                for idx, frames, rate, err in results:
                    if err is None:
                        headers[idx] = (frames, rate)
                    else:
                        skipped[idx] = err
                done += len(results)
                if progress:
                    progress("reading headers", done, len(clips))
            log.info("read %d headers in %.2f s (%d workers)", len(clips), time.perf_counter() - t1, workers)
            # 2. window counts and rows
            jobs_meta: list[tuple[int, int, np.ndarray, int]] = []  # clip, samples, starts, row
            row = 0
            for i in range(len(clips)):
                if i not in headers:
                    continue
                frames, rate = headers[i]
                n = round(frames * sr / rate)  # at least MIN_AUDIO_SAMPLES: the header pass checked
                starts = window_starts(spec, n)
                jobs_meta.append((i, n, starts, row))
                row += len(starts)
            total_rows = row
            feat_path = tmp / "features.npy"
            mm = open_memmap(feat_path, mode="w+", dtype=np.float16, shape=(total_rows, fp.n_mels, n_frames))
            del mm
            # 3. decode and featurize, the workers writing into the memory map
            done = 0
            feat_tasks = (
                (
                    str(feat_path),
                    settings.features,
                    spec,
                    settings.batch_size,
                    [_Job(i, source.fetch(clips[i]), clips[i].path, n, st, r) for i, n, st, r in chunk],
                )
                for chunk in chunks(jobs_meta, settings.chunk_size)
            )
            t1 = time.perf_counter()
            for fresults in ordered_map(star(_featurize), feat_tasks, **pool_args):
                for idx, err in fresults:
                    if err is not None:
                        skipped[idx] = err
                done += len(fresults)
                if progress:
                    progress("featurizing", done, len(jobs_meta))
            log.info("featurized %d windows in %.2f s", total_rows, time.perf_counter() - t1)
        # 4. drop the rows of clips that failed while decoding (their headers looked fine)
        kept = [m for m in jobs_meta if m[0] not in skipped]
        if len(kept) != len(jobs_meta):
            _compact(feat_path, kept, fp.n_mels, n_frames, settings.chunk_size)
        write_tables(
            tmp,
            clips=clips,
            classes=labels_of(clips),
            windows=[
                ClipWindows(i, starts, spec.ends(starts, n), headers[i][0] / headers[i][1], headers[i][1])
                for i, n, starts, _ in kept
            ],
            sample_rate=spec.sample_rate,
            skipped=skipped,
            params={
                "features": settings.features.to_dict(),
                "window_s": settings.window_s,
                "hop_s": settings.hop_s,
                "split": {"val": settings.val, "test": settings.test, "seed": settings.split_seed},
                "source": source.describe(),
            },
            key=key,
            name=settings.name,
            fmt=CACHE_FORMAT,
        )
    cache = FeatureCache.open(out_dir)
    cache.built = True
    if cache.meta["n_windows"] == 0:
        raise DatasetError(f"{out_dir}: no clip could be decoded; see {out_dir / 'skipped.csv'}")
    return cache


def _compact(
    feat_path: Path, kept: list[tuple[int, int, np.ndarray, int]], n_mels: int, n_frames: int, chunk: int
) -> None:
    """Rewrite ``features.npy`` with only the rows of ``kept`` clips, a chunk at a time."""
    from numpy.lib.format import open_memmap

    src = np.load(feat_path, mmap_mode="r")
    rows = np.concatenate([r + np.arange(len(st)) for _, _, st, r in kept]) if kept else np.zeros(0, int)
    dst_path = feat_path.with_name("features.compact.npy")
    dst = open_memmap(dst_path, mode="w+", dtype=np.float16, shape=(len(rows), n_mels, n_frames))
    step = max(1, chunk * 8)
    for b in range(0, len(rows), step):
        dst[b : b + step] = src[rows[b : b + step]]
    dst.flush()
    del dst, src
    os.replace(dst_path, feat_path)
