"""The synthetic generator: determinism, variety, and a class structure a model has to learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vocalis.data.synthetic import CALL_TYPES, SAMPLE_RATES, SynthSpec, generate, iter_clips
from vocalis.errors import ConfigError


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    spec = SynthSpec(classes=4, per_class=3, seed=7)
    a = _files(generate(tmp_path / "a", spec))
    b = _files(generate(tmp_path / "b", spec))
    assert a == b
    assert len([k for k in a if k.endswith((".wav", ".flac"))]) == 12


def test_different_seed_gives_different_files(tmp_path: Path) -> None:
    a = _files(generate(tmp_path / "a", SynthSpec(classes=3, per_class=3, seed=1)))
    b = _files(generate(tmp_path / "b", SynthSpec(classes=3, per_class=3, seed=2)))
    audio_a = {k: v for k, v in a.items() if k != "synth.json"}
    audio_b = {k: v for k, v in b.items() if k != "synth.json"}
    assert not set(audio_a.values()) & set(audio_b.values())


def test_more_clips_per_class_keeps_the_existing_ones() -> None:
    small = {(lbl, n): x for lbl, n, x, _ in iter_clips(SynthSpec(classes=2, per_class=2, seed=0))}
    big = {(lbl, n): x for lbl, n, x, _ in iter_clips(SynthSpec(classes=2, per_class=4, seed=0))}
    for k, x in small.items():
        np.testing.assert_array_equal(big[k], x)


def test_tree_is_class_per_folder_with_varied_rates_lengths_and_formats(tmp_path: Path) -> None:
    root = generate(tmp_path / "s", SynthSpec(classes=8, per_class=6, seed=0))
    dirs = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert dirs == sorted(CALL_TYPES)
    infos = [sf.info(p) for p in root.rglob("*") if p.suffix in (".wav", ".flac")]
    assert len(infos) == 48
    assert {i.samplerate for i in infos} <= set(SAMPLE_RATES) and len({i.samplerate for i in infos}) >= 3
    assert {i.format for i in infos} == {"WAV", "FLAC"}
    durations = [i.duration for i in infos]
    assert min(durations) >= 1.0 and max(durations) <= 5.0 and max(durations) - min(durations) > 2


def test_existing_tree_is_not_regenerated(tmp_path: Path) -> None:
    root = generate(tmp_path / "s", SynthSpec(classes=2, per_class=2))
    f = next(root.rglob("*.wav"))
    before = f.stat().st_mtime_ns
    generate(root, SynthSpec(classes=2, per_class=2))
    assert f.stat().st_mtime_ns == before
    generate(root, SynthSpec(classes=2, per_class=2), force=True)
    assert f.stat().st_mtime_ns != before


@pytest.mark.parametrize("bad", [{"classes": 1}, {"classes": 99}, {"per_class": 0}])
def test_invalid_specs_raise_config_errors(bad: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        SynthSpec(**bad)


def test_classes_are_not_separable_by_level_alone() -> None:
    """The gain is random per clip: the loudness of a clip says nothing about its class."""
    peaks: dict[str, list[float]] = {}
    for label, _, x, _ in iter_clips(SynthSpec(classes=8, per_class=8, seed=0)):
        peaks.setdefault(label, []).append(float(np.abs(x).max()))
    means = [np.mean(v) for v in peaks.values()]
    assert max(means) - min(means) < 0.25


def test_a_synthetic_tree_of_other_sizes_or_a_user_folder_is_never_rewritten(tmp_path: Path) -> None:
    """`train experiment=demo data.root=DIR` generates into DIR: it must not silently rewrite a tree made
    with other sizes, nor write clips into a folder of the user's own files."""
    from vocalis.errors import DatasetError

    root = generate(tmp_path / "s", SynthSpec(classes=2, per_class=2, seed=0))
    before = _files(root)
    with pytest.raises(DatasetError, match=r"other settings \(per_class 2 -> 3\)"):
        generate(root, SynthSpec(classes=2, per_class=3, seed=0))
    assert _files(root) == before
    assert _files(generate(root, SynthSpec(classes=2, per_class=2, seed=0))) == before  # same spec: kept
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "field.wav").write_bytes(b"my recording")
    with pytest.raises(DatasetError, match="not a synthetic dataset"):
        generate(mine, SynthSpec(classes=2, per_class=2))
    assert [p.name for p in mine.iterdir()] == ["field.wav"]
