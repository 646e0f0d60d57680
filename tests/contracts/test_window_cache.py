"""The one window-cache reader/writer (feature and embedding caches differ only in the array file and the
key), the staged directory that makes a cache complete or absent, and the artifact's file list."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from vocalis.contracts.cache import ClipWindows, FeatureCache, staged_cache, write_tables
from vocalis.contracts.card import ModelCard, artifact_files, required_files
from vocalis.errors import CacheError


@dataclass(frozen=True)
class _Clip:
    clip_id: str
    path: str
    label: str
    split: str | None
    group: str | None


CLIPS = [
    _Clip("a1", "calls/a/1.wav", "a", "train", "g1"),
    _Clip("b1", "calls/b/1.wav", "b", "test", "g2"),
    _Clip("b2", "calls/b/broken.wav", "b", "train", "g3"),
]


def _build(tmp: Path, array_file: str, key: str) -> None:
    np.save(tmp / array_file, np.zeros((3, 4), np.float32))
    write_tables(
        tmp,
        clips=CLIPS,
        classes=["a", "b"],
        windows=[
            ClipWindows(0, np.array([0, 8000]), np.array([16000, 20000]), 1.25, 44_100),
            ClipWindows(1, np.array([0]), np.array([12000]), 0.75, 16_000),
        ],
        sample_rate=16_000,
        skipped={2: "not audio"},
        params={"window_s": 1.0},
        key=key,
        name="calls",
        fmt=1,
    )


def test_written_tables_read_back_through_the_one_reader(tmp_path: Path) -> None:
    out = tmp_path / "calls-abc"
    with staged_cache(out, "k1", FeatureCache) as tmp:
        _build(tmp, "features.npy", "k1")
    cache = FeatureCache.open(out)
    m = cache.manifest
    assert m["start_s"].tolist() == [0.0, 0.5, 0.0] and m["end_s"].tolist() == [1.0, 1.25, 0.75]
    assert m["label_index"].tolist() == [0, 0, 1]
    assert m["orig_sample_rate"].tolist() == [44_100, 44_100, 16_000]
    assert cache.meta["n_windows"] == 3 and cache.meta["n_clips"] == 2 and cache.meta["n_skipped"] == 1
    assert cache.meta["splits"] == {"train": {"clips": 1, "windows": 2}, "test": {"clips": 1, "windows": 1}}
    assert cache.skipped.values.tolist() == [["calls/b/broken.wav", "not audio"]]
    assert cache.counts() == {"train": {"a": 2, "b": 0}, "test": {"a": 0, "b": 1}}
    assert cache.skip_reasons() == {"not audio": 1}
    # like failures count together: the decoder's parenthesised detail is left out
    (out / "skipped.csv").write_text(
        "file,reason\nx.wav,decoding failed (bad header)\ny.wav,decoding failed (EOF)\nz.wav,not audio\n"
    )
    assert cache.skip_reasons() == {"decoding failed": 2, "not audio": 1}
    assert cache.features.shape == (3, 4)
    assert FeatureCache.is_current(out, "k1") and not FeatureCache.is_current(out, "k2")


def test_the_embedding_reader_wants_its_own_array(tmp_path: Path) -> None:
    pytest.importorskip("omegaconf")  # vocalis.transfer.cache reads the data config
    from vocalis.transfer.cache import EmbeddingCache

    out = tmp_path / "calls-birdnet-abc"
    with staged_cache(out, "k1", EmbeddingCache) as tmp:
        _build(tmp, "features.npy", "k1")  # a feature array under an embedding cache's name
    with pytest.raises(CacheError, match=r"incomplete embedding cache, missing embeddings\.npy"):
        EmbeddingCache.open(out)
    assert not EmbeddingCache.is_current(out, "k1")


def test_a_failed_build_leaves_nothing_and_keeps_what_was_there(tmp_path: Path) -> None:
    out = tmp_path / "calls-abc"
    with staged_cache(out, "k1", FeatureCache) as tmp:
        _build(tmp, "features.npy", "k1")
    with pytest.raises(RuntimeError), staged_cache(out, "k2", FeatureCache, force=True) as tmp:
        _build(tmp, "features.npy", "k2")
        raise RuntimeError("killed half-way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls-abc"]  # no temporary folder left
    assert FeatureCache.is_current(out, "k1")


def test_a_finished_cache_of_the_same_key_is_kept_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "calls-abc"
    with staged_cache(out, "k1", FeatureCache) as tmp:
        _build(tmp, "features.npy", "k1")
    first = (out / "cache.json").stat().st_mtime_ns
    with staged_cache(out, "k1", FeatureCache) as tmp:  # another run finished it meanwhile
        _build(tmp, "features.npy", "k1")
    assert (out / "cache.json").stat().st_mtime_ns == first
    with staged_cache(out, "k1", FeatureCache, force=True) as tmp:
        _build(tmp, "features.npy", "k1")
    assert (out / "cache.json").stat().st_mtime_ns != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls-abc"]


def test_the_artifact_file_list(tmp_path: Path) -> None:
    base = {
        "classes": ["a", "b"],
        "sample_rate": 48_000,
        "window_s": 3.0,
        "hop_s": 3.0,
        "features": {"sample_rate": 48_000, "f_max": 15_000.0},
    }
    assert required_files(ModelCard.from_dict(base)) == ["model.onnx", "model.json"]
    two_part = {**base, "backbone": {"file": "backbone.tflite", "licence_file": "BACKBONE_LICENSE.txt"}}
    assert required_files(ModelCard.from_dict(two_part)) == [
        "model.onnx",
        "model.json",
        "backbone.tflite",
        "BACKBONE_LICENSE.txt",
    ]
    for name in ("model.onnx", "model.json", "backbone.tflite", "reference.json", "notes.txt"):
        (tmp_path / name).write_text("x")
    names = [p.name for p in artifact_files(tmp_path)]
    assert names == ["backbone.tflite", "model.json", "model.onnx", "reference.json"]  # no notes.txt
