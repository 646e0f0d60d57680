"""Stratified, group-aware, reproducible train/val/test splits.

Splits are decided per *group* (a recording, or a set of clips that share a ``group``: same animal, same
session), so that no group, and therefore no window of one recording, straddles two splits. Within each
class, the groups are shuffled with the split's random seed and dealt out so that each split gets its
share of that class's clips: the split is stratified by class.

Splits a source gives (a CSV ``split`` column, the wmms train/test) are kept; clips without one are
assigned. ``val`` is carved out of ``train`` when the source gives train/test only.

Few-shot (``data.max_per_class=N``, :func:`few_shot_indices`): after the split, at most N recordings of each
class are kept in ``train`` (and at most N in ``val``), drawn with the run's seed from a window manifest;
``test`` is never reduced. Feature caches and embedding caches share it, so the same seed keeps the same
recordings for a network trained from scratch and for a transfer head.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from vocalis.data.sources import Clip
from vocalis.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def _shuffled(keys: list[str], seed: int, salt: str) -> list[str]:
    """A seed-determined order that does not depend on Python's hash randomisation or on other keys."""
    return sorted(keys, key=lambda k: hashlib.blake2b(f"{seed}|{salt}|{k}".encode(), digest_size=8).digest())


def _deal(groups: dict[str, list[Clip]], fractions: dict[str, float], seed: int, salt: str) -> dict[str, str]:
    """Assign whole groups to the splits in ``fractions`` (the rest to ``train``), stratified by label.

    Each group is filed under its majority label; per label, groups are dealt in a seeded order, filling
    each split up to its target share of the label's clips. A split with a positive fraction gets at least
    one group of every label that has enough groups for all the requested splits plus train.
    """
    by_label: dict[str, list[str]] = defaultdict(list)
    for g, members in groups.items():
        majority = Counter(c.label for c in members).most_common(1)[0][0]
        by_label[majority].append(g)
    out: dict[str, str] = {}
    wanted = [(s, f) for s, f in fractions.items() if f > 0]
    for label in sorted(by_label):
        order = _shuffled(by_label[label], seed, f"{salt}|{label}")
        total = sum(len(groups[g]) for g in order)
        i = 0
        for split, frac in wanted:
            target = frac * total
            # at least one group per split, as long as train keeps at least one too
            must = len(order) - i > len(wanted)
            taken = 0
            while i < len(order) - 1 and (
                taken < target - len(groups[order[i]]) / 2 or (must and taken == 0)
            ):
                out[order[i]] = split
                taken += len(groups[order[i]])
                i += 1
        for g in order[i:]:
            out[g] = "train"
    return out


def assign_splits(clips: Sequence[Clip], val: float, test: float, seed: int) -> list[Clip]:
    """Return the clips with ``split`` filled in: given splits kept, the rest assigned by group.

    Args:
        clips: the source's clips; ``group`` defaults to the clip id.
        val: fraction of clips for validation (of all clips, or of ``train`` when the source splits).
        test: fraction for test; ignored when the source already gives a test split.
        seed: the shuffle seed; the same seed and clips give the same splits.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ConfigError(f"data.split fractions must be in [0, 1) with val + test < 1, got {val=}, {test=}")
    clips = [c if c.group else replace(c, group=c.clip_id) for c in clips]
    given = {c.split for c in clips if c.split}
    # groups that the source itself put in more than one split cannot be fixed here: say so
    seen: dict[str, set[str]] = defaultdict(set)
    for c in clips:
        if c.split:
            seen[str(c.group)].add(c.split)
    straddling = [g for g, s in seen.items() if len(s) > 1]
    if straddling:
        log.warning("%d group(s) are in more than one given split, e.g. %s", len(straddling), straddling[0])
    # groups with a given split pin their unsplit clips there too
    pinned = {g: sorted(s)[0] for g, s in seen.items()}
    free: dict[str, list[Clip]] = defaultdict(list)
    for c in clips:
        if not c.split and str(c.group) not in pinned:
            free[str(c.group)].append(c)
    fractions = {"test": 0.0 if "test" in given else test, "val": 0.0 if "val" in given else val}
    decided = _deal(free, fractions, seed, "free") if free else {}
    result = []
    for c in clips:
        split = c.split or pinned.get(str(c.group)) or decided[str(c.group)]
        result.append(replace(c, split=split))
    if "train" in given and "val" not in given and val > 0:
        # carve val out of the given train split, group-wise and stratified
        train_groups: dict[str, list[Clip]] = defaultdict(list)
        for c in result:
            if c.split == "train":
                train_groups[str(c.group)].append(c)
        moved = _deal(train_groups, {"val": val}, seed, "carve")
        result = [
            replace(c, split=moved.get(str(c.group), "train")) if c.split == "train" else c for c in result
        ]
    return result


def few_shot_rows(manifest: pd.DataFrame, split: str, max_per_class: int | None, seed: int) -> np.ndarray:
    """Window indices (the manifest's ``index``) of ``split``, keeping at most ``max_per_class`` recordings
    (``clip_id``) of each class; all windows of a kept recording are kept. ``None``: the whole split.

    Per class (in sorted label order), the split's recordings are sorted by id and ``max_per_class`` of
    them are drawn without replacement by ``numpy.random.default_rng(seed)``: the draw depends on the
    recordings and `seed` only, not on the window length or the cache, so a feature cache and an
    embedding cache of the same data and split give the same recordings.
    """
    rows = manifest[manifest["split"] == split]
    if not max_per_class:
        return rows["index"].to_numpy()
    rng = np.random.default_rng(seed)
    keep: list[str] = []
    for _, group in rows.groupby("label", sort=True):
        clips = np.array(sorted(group["clip_id"].unique()))
        keep += rng.choice(clips, size=min(int(max_per_class), len(clips)), replace=False).tolist()
    return rows[rows["clip_id"].isin(set(keep))]["index"].to_numpy()


def check_max_per_class(value: object) -> int | None:
    """``data.max_per_class`` as an int (None: no limit); :class:`ConfigError` unless a whole number >= 1."""
    if value is None:
        return None
    whole = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(value, float) and value.is_integer():
        whole, value = True, int(value)
    if not whole or int(value) < 1:  # type: ignore[call-overload]
        raise ConfigError(f"data.max_per_class: must be a whole number >= 1 (or null), got {value!r}")
    return int(value)  # type: ignore[call-overload]


def few_shot_indices(manifest: pd.DataFrame, max_per_class: int | None, seed: int) -> dict[str, np.ndarray]:
    """Window indices of ``train``, ``val`` and ``test`` under ``data.max_per_class``.

    ``train`` keeps at most ``max_per_class`` recordings per class drawn with ``seed``, ``val`` at most as
    many drawn with ``seed + 1`` (an independent draw, so a class's val recordings do not mirror its
    train draw), ``test`` is never reduced (few-shot runs are compared on the full test split).
    """
    n = check_max_per_class(max_per_class)
    return {
        "train": few_shot_rows(manifest, "train", n, seed),
        "val": few_shot_rows(manifest, "val", n, seed + 1),
        "test": few_shot_rows(manifest, "test", None, seed),
    }
