"""Splits: stratified, group-aware, reproducible; given splits respected, val carved out of train."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from vocalis.data.sources import Clip
from vocalis.data.splits import assign_splits, check_max_per_class, few_shot_indices
from vocalis.errors import ConfigError


def clips(n_classes: int = 4, per_class: int = 40, group_size: int = 1) -> list[Clip]:
    out = []
    for c in range(n_classes):
        for i in range(per_class):
            out.append(Clip(f"c{c}/{i}", f"/x/c{c}/{i}.wav", f"c{c}", None, f"c{c}-g{i // group_size}"))
    return out


def test_fractions_are_stratified_per_class() -> None:
    result = assign_splits(clips(), val=0.2, test=0.2, seed=0)
    for c in range(4):
        counts = Counter(r.split for r in result if r.label == f"c{c}")
        assert counts["test"] == pytest.approx(8, abs=1)
        assert counts["val"] == pytest.approx(8, abs=1)
        assert counts["train"] == pytest.approx(24, abs=2)


def test_groups_never_straddle_splits() -> None:
    result = assign_splits(clips(group_size=5), val=0.2, test=0.2, seed=3)
    by_group: dict[str, set[str]] = {}
    for r in result:
        by_group.setdefault(str(r.group), set()).add(str(r.split))
    assert all(len(s) == 1 for s in by_group.values())
    assert {s for v in by_group.values() for s in v} == {"train", "val", "test"}


def test_same_seed_same_splits_other_seed_other_splits() -> None:
    a = [c.split for c in assign_splits(clips(), 0.2, 0.2, seed=5)]
    b = [c.split for c in assign_splits(clips(), 0.2, 0.2, seed=5)]
    c = [c.split for c in assign_splits(clips(), 0.2, 0.2, seed=6)]
    assert a == b and a != c


def test_every_split_gets_every_class_even_when_small() -> None:
    result = assign_splits(clips(n_classes=3, per_class=4), 0.15, 0.15, seed=0)
    for c in range(3):
        assert {r.split for r in result if r.label == f"c{c}"} == {"train", "val", "test"}


def test_given_splits_are_kept_and_val_is_carved_from_train() -> None:
    given = [
        Clip(c.clip_id, c.path, c.label, "test" if i % 5 == 0 else "train", c.group)
        for i, c in enumerate(clips(group_size=2))
    ]
    result = assign_splits(given, val=0.2, test=0.3, seed=0)
    for before, after in zip(given, result, strict=True):
        if before.split == "test":
            assert after.split == "test"
        else:
            assert after.split in ("train", "val")
    n_train = sum(1 for c in given if c.split == "train")
    n_val = sum(1 for r in result if r.split == "val")
    assert n_val == pytest.approx(0.2 * n_train, abs=6)


def test_unsplit_clips_of_a_group_follow_the_group_given_split() -> None:
    rows = [
        Clip("a", "/a", "x", "test", "g1"),
        Clip("b", "/b", "x", None, "g1"),
        *clips(n_classes=1, per_class=10),
    ]
    result = {c.clip_id: c.split for c in assign_splits(rows, 0.2, 0.2, seed=0)}
    assert result["a"] == result["b"] == "test"


def test_bad_fractions_raise() -> None:
    with pytest.raises(ConfigError):
        assign_splits(clips(), val=0.6, test=0.5, seed=0)


# --- few-shot (data.max_per_class) -----------------------------------------------------------------


def _manifest(clips_per_split: dict[str, int], windows_per_clip: int = 3, n_classes: int = 3) -> pd.DataFrame:
    """A window manifest: ``windows_per_clip`` windows of every clip, clips numbered per class and split."""
    rows = []
    for c in range(n_classes):
        for split, n in clips_per_split.items():
            for k in range(n):
                for _ in range(windows_per_clip):
                    clip = {"clip_id": f"c{c}/{split}{k}", "label": f"c{c}", "split": split}
                    rows.append({"index": len(rows), **clip})
    return pd.DataFrame(rows)


def _clips(m: pd.DataFrame, indices: np.ndarray) -> dict[str, set[str]]:
    sub = m.set_index("index").loc[indices]
    return {label: set(g["clip_id"]) for label, g in sub.groupby("label")}


def test_few_shot_keeps_n_recordings_per_class_with_all_their_windows_and_the_whole_test_split() -> None:
    m = _manifest({"train": 8, "val": 3, "test": 2})
    rows = few_shot_indices(m, 5, seed=0)
    train = _clips(m, rows["train"])
    assert {k: len(v) for k, v in train.items()} == {"c0": 5, "c1": 5, "c2": 5}
    assert len(rows["train"]) == 5 * 3 * 3  # every window of a kept recording
    # validation is capped at N too (3 < 5: all kept); the test split is never reduced
    assert sorted(rows["val"]) == sorted(m[m["split"] == "val"]["index"])
    assert sorted(rows["test"]) == sorted(m[m["split"] == "test"]["index"])
    assert sorted(few_shot_indices(m, 2, seed=0)["test"]) == sorted(rows["test"])
    assert {len(v) for v in _clips(m, few_shot_indices(m, 2, seed=0)["val"]).values()} == {2}
    # None: every window of every split
    everything = few_shot_indices(m, None, seed=0)
    assert all(list(everything[s]) == list(m[m["split"] == s]["index"]) for s in ("train", "val", "test"))


def test_few_shot_draw_depends_on_seed_and_recordings_only() -> None:
    m = _manifest({"train": 8, "val": 3, "test": 2}, windows_per_clip=3)
    a = _clips(m, few_shot_indices(m, 3, seed=4)["train"])
    assert a == _clips(m, few_shot_indices(m, 3, seed=4)["train"])
    # other seeds draw other recordings (8 choose 3 per class: all five equal by chance is ~1e-11)
    assert any(_clips(m, few_shot_indices(m, 3, seed=s)["train"]) != a for s in range(5))
    # another window length (an embedding cache at the backbone's window: 1 window per clip, rows in
    # another order) draws the same recordings for the same seed
    other = _manifest({"train": 8, "val": 3, "test": 2}, windows_per_clip=1).iloc[::-1].reset_index(drop=True)
    assert _clips(other, few_shot_indices(other, 3, seed=4)["train"]) == a


@pytest.mark.parametrize("bad", [0, -2, 2.5, "five", True])
def test_bad_max_per_class_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"data\.max_per_class"):
        check_max_per_class(bad)


def test_feature_datamodule_few_shot_on_the_tiny_prepared_set(tiny_overrides: list[str]) -> None:
    """The DataModule over a real prepared feature cache keeps the recordings few_shot_indices draws."""
    pytest.importorskip("lightning")
    from vocalis.data.datamodule import CacheDataModule
    from vocalis.training.config import compose_config
    from vocalis.training.train import prepare_data

    cache = prepare_data(compose_config(tiny_overrides))  # current: the session's tiny cache
    m = cache.manifest
    full = CacheDataModule(cache, seed=3)
    dm = CacheDataModule(cache, seed=3, max_per_class=2)
    train = _clips(m, dm.datasets["train"].indices)
    assert set(train) == set(cache.classes) and all(len(v) == 2 for v in train.values())
    assert all(len(v) <= 2 for v in _clips(m, dm.datasets["val"].indices).values())
    assert list(dm.datasets["test"].indices) == list(full.datasets["test"].indices)
    # labels follow the kept windows, and the features read are those rows of the cache
    by_index = m.set_index("index")["label_index"]
    assert list(dm.train_labels) == list(by_index.loc[dm.datasets["train"].indices])
    x, y, row = dm.datasets["train"][0]
    assert row == dm.datasets["train"].indices[0] and y == by_index.loc[row]
    assert np.array_equal(x[0].numpy(), np.asarray(cache.features[row], dtype=np.float32))
    assert train == _clips(m, few_shot_indices(m, 2, seed=3)["train"])
    assert len(dm.datasets["train"]) < len(full.datasets["train"])
