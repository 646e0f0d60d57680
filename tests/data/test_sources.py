"""Sources: the CSV manifest and the wmms (Hugging Face parquet) loader on local files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from support.data import make_cfg, write_clip, write_tree
from vocalis.data.prepare import prepare_from_config
from vocalis.data.sources import CsvSource, FolderSource, HFParquetSource
from vocalis.errors import DatasetError


def test_folder_lists_audio_by_class_and_ignores_other_files(tree: Path) -> None:
    clips = FolderSource(tree).clips()
    assert {c.label for c in clips} == {"class0", "class1", "class2"}
    assert len(clips) == 20  # 18 good + 2 broken (decoding decides later), README.txt ignored
    assert all(c.group == c.clip_id and c.fingerprint for c in clips)


def test_csv_manifest_with_splits_groups_and_a_corrupt_file(tmp_path: Path) -> None:
    root = tmp_path / "csvset"
    rows = ["path,label,split,group"]
    for i in range(12):
        label = "whale" if i % 2 else "dolphin"
        write_clip(root / "audio" / f"{i}.wav", 1.2, freq=400.0 + 300 * (i % 2), seed=i)
        split = "test" if i < 4 else ""
        rows.append(f"audio/{i}.wav,{label},{split},animal{i // 2}")
    (root / "audio" / "bad.wav").write_bytes(b"RIFF1234WAVE")
    rows.append("audio/bad.wav,whale,,")
    rows.append("audio/missing.wav,dolphin,train,")
    (root / "m.csv").write_text("\n".join(rows) + "\n")
    cache = prepare_from_config(
        make_cfg(source="csv", manifest=str(root / "m.csv"), split={"val": 0.2, "test": 0.2, "seed": 0}),
        {"cache_dir": str(tmp_path / "c")},
    )
    m = cache.manifest
    assert set(m[m["clip_id"].isin([f"audio/{i}.wav" for i in range(4)])]["split"]) == {"test"}
    assert m.groupby("group")["split"].nunique().max() == 1  # animals never straddle splits
    assert sorted(Path(f).name for f in cache.skipped["file"]) == ["bad.wav", "missing.wav"]
    assert "file not found" in cache.skipped.set_index("file").iloc[1]["reason"]
    assert cache.classes == ["dolphin", "whale"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("file,label\nx.wav,a\n", "missing column"),
        ("path,label,split\nx.wav,a,holdout\n", "split must be one of"),
        ("path,label\nx.wav,\n", "empty path or label"),
        ("path,label\nx.wav,a\nx.wav,b\n", "listed twice"),
    ],
)
def test_csv_manifest_errors_name_the_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    m = tmp_path / "m.csv"
    m.write_text(content)
    with pytest.raises(DatasetError, match=message) as err:
        CsvSource(m).clips()
    assert str(m) in str(err.value)


def _wav_bytes(seconds: float, sr: int, freq: float) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    buf = io.BytesIO()
    sf.write(buf, (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def write_wmms_like(local: Path) -> list[str]:
    """A tiny copy of the confit/wmms-parquet layout: ``data/{train,test}-*.parquet``.

    Written with pyarrow exactly as ``datasets`` writes it (an ``audio`` struct {bytes, path}, an int64
    ``label`` and the ``huggingface`` schema metadata that makes them ``Audio`` and ``ClassLabel``), so no
    audio encoder (torchcodec) is needed to build it.
    """
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    names = ["Beluga, White Whale", "Bottlenose Dolphin", "Humpback Whale"]
    hf = {
        "info": {"features": {"audio": {"_type": "Audio"}, "label": {"_type": "ClassLabel", "names": names}}}
    }
    schema = pa.schema(
        [
            pa.field("audio", pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])),
            pa.field("label", pa.int64()),
        ],
        metadata={"huggingface": json.dumps(hf)},
    )
    (local / "data").mkdir(parents=True)
    for split, n in (("train", 15), ("test", 6)):
        audio, labels = [], []
        for i in range(n):
            label = i % 3
            sr = (8_000, 44_100, 96_000)[i % 3]
            data = _wav_bytes(1.0 + 0.3 * (i % 4), sr, 300.0 * (label + 1))
            audio.append({"bytes": data, "path": f"{split}_{i}.wav"})
            labels.append(label)
        if split == "train":
            audio[-1] = {"bytes": b"garbage bytes", "path": "broken.wav"}
        table = pa.table({"audio": audio, "label": labels}, schema=schema)
        pq.write_table(table, local / "data" / f"{split}-00000-of-00001.parquet")
    return names


def test_wmms_loader_on_a_local_parquet_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    names = write_wmms_like(tmp_path / "wmms")
    src = HFParquetSource(local_dir=str(tmp_path / "wmms"), cache_dir=str(tmp_path / "hf"))
    clips = src.clips()
    assert len(clips) == 21 and {c.label for c in clips} == set(names)
    assert {c.split for c in clips} == {"train", "test"}
    cfg = make_cfg(
        source="wmms",
        name="wmms",
        local_dir=str(tmp_path / "wmms"),
        hf_cache_dir=str(tmp_path / "hf"),
        split={"val": 0.2, "test": 0.2, "seed": 0},
    )
    cache = prepare_from_config(cfg, {"cache_dir": str(tmp_path / "c")})
    m = cache.manifest
    assert cache.classes == sorted(names)
    # the set's own test split is kept; val is carved out of its train split
    assert set(m[m["clip_id"].str.startswith("test/")]["split"]) == {"test"}
    assert set(m[m["clip_id"].str.startswith("train/")]["split"]) == {"train", "val"}
    assert cache.meta["n_skipped"] == 1 and cache.skipped["file"].iloc[0].endswith("broken.wav")
    assert set(m["orig_sample_rate"]) == {8_000, 44_100, 96_000}
    # the same through data_files
    files = {
        "train": str(tmp_path / "wmms/data/train-00000-of-00001.parquet"),
        "test": str(tmp_path / "wmms/data/test-00000-of-00001.parquet"),
    }
    again = HFParquetSource(data_files=files, cache_dir=str(tmp_path / "hf")).clips()
    assert [c.fingerprint for c in again] == [c.fingerprint for c in clips]


def test_wmms_offline_without_a_local_copy_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    with pytest.raises(DatasetError) as err:
        HFParquetSource(cache_dir=str(tmp_path / "hf")).clips()
    text = str(err.value)
    assert "huggingface-cli download confit/wmms-parquet --repo-type dataset" in text
    assert "data.local_dir" in text and "HF_HUB_OFFLINE" in text


def test_wmms_missing_local_dir_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        HFParquetSource(local_dir=str(tmp_path / "nope")).clips()


def test_folder_tree_helper_sanity(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "t", classes=2, per_class=2, bad=False)
    assert len(list(root.rglob("*.wav"))) + len(list(root.rglob("*.flac"))) == 4


def test_digests_of_many_files_in_threads_then_from_the_memo(tmp_path: Path) -> None:
    """A first pass hashes in threads (>= 64 files) and gives what hashing one file at a time gives; the
    memo then answers while size and mtime are unchanged, and a changed file is hashed again."""
    import hashlib
    import os

    from vocalis.data.sources import FileDigests

    files = []
    for i in range(70):
        f = tmp_path / "set" / f"{i}.bin"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(os.urandom(1000 + i))
        files.append(f)
    memo = FileDigests(tmp_path / "memo.json")
    got = memo.digest_many([*files, tmp_path / "gone.bin"])
    assert got[:-1] == [hashlib.sha256(f.read_bytes()).hexdigest()[:32] for f in files]
    assert got[-1] == "missing" and len(set(got)) == 71
    memo.save()
    again = FileDigests(tmp_path / "memo.json")
    st = files[3].stat()
    files[3].write_bytes(b"x" * st.st_size)  # same size, same mtime restored: the memo is trusted
    os.utime(files[3], ns=(st.st_atime_ns, st.st_mtime_ns))
    files[5].write_bytes(b"changed")  # another size: hashed again
    later = again.digest_many(files)
    assert later[3] == got[3] and later[5] == hashlib.sha256(b"changed").hexdigest()[:32]
    assert later[:3] == got[:3] and later[6:] == got[6:70]
