"""The preparation pipeline end to end: cache layout, skipped files, reuse, invalidation, atomicity."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from support.data import make_cfg, write_clip, write_tree
from vocalis.contracts.cache import MANIFEST_COLUMNS, FeatureCache
from vocalis.contracts.windows import WindowSpec
from vocalis.data.prepare import prepare_from_config
from vocalis.errors import CacheError, ConfigError, DatasetError
from vocalis.features import FeatureParams, LogMel


def test_folder_cache_layout_and_contents(tree: Path, tmp_path: Path) -> None:
    cache = prepare_from_config(make_cfg(root=str(tree)), {"cache_dir": str(tmp_path / "cache")})
    assert cache.built
    assert cache.dir.parent == tmp_path / "cache" and cache.dir.name == f"t-{cache.hash[:12]}"
    for f in ("features.npy", "manifest.csv", "classes.json", "params.json", "skipped.csv", "cache.json"):
        assert (cache.dir / f).is_file()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".tmp")]
    feats = np.load(cache.dir / "features.npy", mmap_mode="r")
    m = cache.manifest
    assert feats.dtype == np.float16 and feats.shape == (len(m), 32, 101)
    assert list(m.columns) == MANIFEST_COLUMNS
    assert m["index"].tolist() == list(range(len(m)))
    assert cache.classes == ["class0", "class1", "class2"]
    assert (m["label_index"] == m["label"].map(cache.classes.index)).all()
    assert set(m["split"]) == {"train", "val", "test"}
    assert cache.meta["n_clips"] == 18 and cache.meta["n_skipped"] == 2
    assert cache.meta["n_windows"] == len(m)
    assert cache.window == WindowSpec(1.0, 0.5, 16_000)
    assert cache.feature_params.n_mels == 32
    # values: every window is a log-mel with max 0 dB and the 80 dB floor
    assert np.all(feats.max(axis=(1, 2)) == 0) and feats.min() >= -80
    # skipped report names both broken files, with reasons
    sk = cache.skipped
    assert sorted(Path(f).name for f in sk["file"]) == ["broken.wav", "empty.wav"]
    assert all(sk["reason"].str.len() > 0)


def test_features_equal_the_featurizer_on_the_loaded_window(tree: Path, tmp_path: Path) -> None:
    from vocalis import audio

    cache = prepare_from_config(make_cfg(root=str(tree)), {"cache_dir": str(tmp_path / "c")})
    m = cache.manifest
    row = m[m["duration_s"] > 2].iloc[1]
    p = FeatureParams.from_dict(cache.params["features"])
    x = audio.load(row["path"], p.sample_rate)
    s = round(row["start_s"] * p.sample_rate)
    win = np.zeros(cache.window.window_samples, np.float32)
    seg = x[s : s + len(win)]
    win[: len(seg)] = seg
    import torch

    with torch.no_grad():
        ref = LogMel(p)(torch.from_numpy(win)[None])[0, 0].numpy()
    # float16 storage: ~0.03 dB resolution at -80 dB
    np.testing.assert_allclose(cache.features[int(row["index"])].astype(np.float32), ref, atol=0.05)


def test_window_rule_short_clip_pads_and_tail_under_half_is_dropped(tmp_path: Path) -> None:
    root = tmp_path / "t"
    write_clip(root / "a" / "short.wav", 0.4)  # shorter than a window: one padded window
    write_clip(root / "a" / "tail.wav", 2.2)  # windows at 0, 1.0 (hop 1); tail of 0.2 s < half: dropped
    write_clip(root / "a" / "half.wav", 2.6)  # tail of 0.6 s >= half: kept
    write_clip(root / "b" / "x.wav", 1.0)
    cfg = make_cfg(root=str(root), hop_s=1.0, split={"val": 0.0, "test": 0.0, "seed": 0})
    m = prepare_from_config(cfg, {"cache_dir": str(tmp_path / "c")}).manifest
    per = m.groupby("clip_id").size().to_dict()
    assert per == {"a/short.wav": 1, "a/tail.wav": 2, "a/half.wav": 3, "b/x.wav": 1}
    half = m[m["clip_id"] == "a/half.wav"]
    assert half["start_s"].tolist() == [0.0, 1.0, 2.0]
    assert half["end_s"].tolist() == pytest.approx([1.0, 2.0, 2.6])


def test_second_run_does_no_work_and_touch_keeps_the_cache(tree: Path, tmp_path: Path) -> None:
    paths = {"cache_dir": str(tmp_path / "cache")}
    first = prepare_from_config(make_cfg(root=str(tree)), paths)
    mtime = (first.dir / "features.npy").stat().st_mtime_ns
    second = prepare_from_config(make_cfg(root=str(tree)), paths)
    assert not second.built and second.dir == first.dir
    assert (second.dir / "features.npy").stat().st_mtime_ns == mtime
    # touching a file without changing its bytes keeps the cache (the key is over contents)
    f = next(tree.glob("class2/*.wav"))
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 5_000_000_000))
    third = prepare_from_config(make_cfg(root=str(tree)), paths)
    assert not third.built and third.hash == first.hash


def test_changed_file_added_file_or_parameter_rebuilds(tree: Path, tmp_path: Path) -> None:
    paths = {"cache_dir": str(tmp_path / "cache")}
    base = prepare_from_config(make_cfg(root=str(tree)), paths)
    f = next(tree.glob("class2/*.wav"))
    write_clip(f, 1.3, freq=999.0, seed=42)  # new contents
    changed = prepare_from_config(make_cfg(root=str(tree)), paths)
    assert changed.built and changed.hash != base.hash
    write_clip(tree / "class2" / "new.wav", 1.0)
    added = prepare_from_config(make_cfg(root=str(tree)), paths)
    assert added.built and added.meta["n_clips"] == base.meta["n_clips"] + 1
    for over in ({"hop_s": 1.0}, {"features": {**make_cfg()["features"], "n_mels": 24}}):
        other = prepare_from_config(make_cfg(root=str(tree), **over), paths)
        assert other.built and other.hash != added.hash
    relabel = tmp_path / "relabel"
    shutil.copytree(tree, relabel)
    (relabel / "class2").rename(relabel / "class9")
    assert prepare_from_config(make_cfg(root=str(relabel)), paths).hash != added.hash
    assert prepare_from_config(make_cfg(root=str(tree)), paths).built is False  # still there
    assert prepare_from_config(make_cfg(root=str(tree)), paths, force=True).built is True


def test_parallel_workers_give_the_same_cache_as_one(tree: Path, tmp_path: Path) -> None:
    one = prepare_from_config(make_cfg(root=str(tree)), {"cache_dir": str(tmp_path / "a")})
    two = prepare_from_config(
        make_cfg(root=str(tree), prepare_workers=2, chunk_size=2), {"cache_dir": str(tmp_path / "b")}
    )
    assert two.hash == one.hash
    np.testing.assert_array_equal(np.asarray(two.features), np.asarray(one.features))
    pd.testing.assert_frame_equal(two.manifest, one.manifest)


def test_a_file_that_fails_after_its_header_is_skipped_and_rows_compacted(tmp_path: Path) -> None:
    import soundfile as sf

    root = write_tree(tmp_path / "t", classes=2, per_class=4, bad=False)
    nan = np.full(16_000, np.nan, dtype=np.float32)
    sf.write(root / "class0" / "nan.wav", nan, 16_000, subtype="FLOAT")  # header fine, samples not
    cache = prepare_from_config(make_cfg(root=str(root)), {"cache_dir": str(tmp_path / "c")})
    assert cache.meta["n_skipped"] == 1 and "NaN" in cache.skipped["reason"].iloc[0]
    assert len(cache.features) == len(cache.manifest) == cache.meta["n_windows"]
    assert np.all(np.asarray(cache.features).max(axis=(1, 2)) == 0)  # no empty (all-zero) rows left


def test_short_clips_are_padded_and_only_empty_ones_skipped(tmp_path: Path) -> None:
    """The one short-audio rule: a 10 ms click is one zero-padded window; an empty file is skipped."""
    import soundfile as sf

    root = write_tree(tmp_path / "t", classes=2, per_class=3, bad=False)
    write_clip(root / "class0" / "tiny.wav", 0.01)
    sf.write(root / "class1" / "empty.wav", np.zeros(0, np.float32), 16_000)
    cache = prepare_from_config(make_cfg(root=str(root)), {"cache_dir": str(tmp_path / "c")})
    assert [Path(f).name for f in cache.skipped["file"]] == ["empty.wav"]
    tiny = cache.manifest[cache.manifest["path"].str.endswith("tiny.wav")]
    assert len(tiny) == 1 and tiny["end_s"].iloc[0] == pytest.approx(0.01, abs=1e-4)


def test_nothing_decodable_and_bad_config_raise_typed_errors(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.wav").write_text("nope")
    with pytest.raises(DatasetError, match="no clip could be decoded"):
        prepare_from_config(make_cfg(root=str(root)), {"cache_dir": str(tmp_path / "c")})
    with pytest.raises(DatasetError, match="does not exist"):
        prepare_from_config(make_cfg(root=str(tmp_path / "missing")), {"cache_dir": str(tmp_path / "c")})
    with pytest.raises(ConfigError, match="f_max"):
        prepare_from_config(
            make_cfg(root=str(root), features={"sample_rate": 8000, "f_max": 7000.0}), {"cache_dir": "x"}
        )
    with pytest.raises(ConfigError, match="source"):
        prepare_from_config(make_cfg(source="nope"), {"cache_dir": str(tmp_path / "c")})


def test_open_refuses_incomplete_caches(tree: Path, tmp_path: Path) -> None:
    cache = prepare_from_config(make_cfg(root=str(tree)), {"cache_dir": str(tmp_path / "c")})
    (cache.dir / "cache.json").unlink()
    with pytest.raises(CacheError, match=r"cache\.json"):
        FeatureCache.open(cache.dir)
    with pytest.raises(CacheError, match="does not exist"):
        FeatureCache.open(tmp_path / "nope")
    # an incomplete directory under the right name is rebuilt, not trusted
    rebuilt = prepare_from_config(make_cfg(root=str(tree)), {"cache_dir": str(tmp_path / "c")})
    assert rebuilt.built and json.loads((rebuilt.dir / "cache.json").read_text())["hash"] == rebuilt.hash


def test_synthetic_source_generates_on_first_use(tmp_path: Path) -> None:
    cfg = make_cfg(
        source="synthetic", root=str(tmp_path / "syn"), synth={"classes": 3, "per_class": 4, "seed": 3}
    )
    cache = prepare_from_config(cfg, {"cache_dir": str(tmp_path / "c")})
    assert (tmp_path / "syn" / "synth.json").exists()
    assert cache.meta["n_clips"] == 12 and len(cache.classes) == 3
    assert cache.dir.name.startswith("t-")


def test_a_data_config_without_a_base_key_is_named(tmp_path: Path) -> None:
    """No silent fallback: a config that does not extend data/base.yaml gets the missing key named."""
    cfg = make_cfg(root=str(tmp_path))
    del cfg["chunk_size"]
    with pytest.raises(ConfigError, match=r"data\.chunk_size is missing"):
        prepare_from_config(cfg, {"cache_dir": str(tmp_path / "c")})
    cfg = make_cfg(root=str(tmp_path), split={"val": 0.2, "test": 0.2})
    with pytest.raises(ConfigError, match=r"data\.split\.seed is missing"):
        prepare_from_config(cfg, {"cache_dir": str(tmp_path / "c")})


def test_preparation_never_imports_torch(tree: Path, tmp_path: Path) -> None:
    """The workers featurize in numpy (torch costs each process a second of CPU and ~0.5 GB to import)."""
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from vocalis.data.prepare import prepare_from_config\n"
        "cfg, paths = json.loads(sys.argv[1]), json.loads(sys.argv[2])\n"
        "cache = prepare_from_config(cfg, paths)\n"
        "assert cache.built and cache.meta['n_windows'] > 0\n"
        "print('torch' in sys.modules)\n"
    )
    cfg = make_cfg(root=str(tree), prepare_workers=2, chunk_size=2)
    args = [json.dumps(cfg), json.dumps({"cache_dir": str(tmp_path / "c")})]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def _square_or_fail(x: int) -> int:
    if x == 7:
        raise ValueError("seven")
    return x * x


@pytest.mark.parametrize("workers", [0, 2])
def test_ordered_map_keeps_task_order_and_raises_a_task_error_in_turn(workers: int) -> None:
    """The pipeline preparation and the predict engine share: results in task order, bounded look-ahead."""
    from vocalis.decode_workers import ordered_map

    got = list(ordered_map(_square_or_fail, range(7), workers=workers, ahead=3, method="fork"))
    assert got == [i * i for i in range(7)]
    seen = []
    with pytest.raises(ValueError, match="seven"):
        for r in ordered_map(_square_or_fail, range(10), workers=workers, ahead=3, method="fork"):
            seen.append(r)
    assert seen == [i * i for i in range(7)]  # everything before the failing task came out, in order


def test_workers_run_one_blas_thread_and_keep_freed_memory() -> None:
    """Each worker starts with one BLAS thread and glibc's allocator keeping freed blocks (the thresholds
    are values mallopt accepts: it refuses, and keep_freed_memory says False, past glibc's limits)."""
    import platform

    from support.workers import worker_state
    from vocalis.decode_workers import ordered_map

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the allocator setting is glibc's")
    got = list(ordered_map(worker_state, range(2), workers=2, method="spawn"))
    assert got == [(1, True), (1, True)]
