"""Splits: stratified, group-aware, reproducible; given splits respected, val carved out of train."""

from __future__ import annotations

from collections import Counter

import pytest

from vocalis.data.sources import Clip
from vocalis.data.splits import assign_splits
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
