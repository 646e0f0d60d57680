"""Augmentations and the cache DataModule, on tensors and a hand-checked feature file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vocalis.data.datamodule import CachedWindows, _collate, class_counts, inverse_frequency_weights
from vocalis.training.augment import dynamic_range_gain, mixup, spec_augment


def _db(b: int = 4) -> torch.Tensor:
    torch.manual_seed(0)
    x = -80 * torch.rand(b, 1, 64, 101)
    x[:, :, 10, 10] = 0.0  # each example peaks at 0 dB, like the featurizer's output
    return x


def test_spec_augment_sets_whole_bands_to_the_floor() -> None:
    x = _db()
    torch.manual_seed(1)
    y = spec_augment(x, freq_masks=2, freq_width=8, time_masks=2, time_width=20)
    floor = x.amin(dim=(1, 2, 3), keepdim=True)
    changed = y != x
    assert changed.any()
    assert torch.all(y[changed] == floor.expand_as(y)[changed])
    # masked cells form whole mel bands and whole frames (plus each example's own minimum cell)
    for b in range(x.shape[0]):
        masked = y[b, 0] == floor[b, 0]
        bands = masked.all(dim=1)[:, None] | masked.all(dim=0)[None, :]
        assert bands.any()
        assert (masked & ~bands).sum() <= 1
    assert torch.equal(spec_augment(x, 0, 8, 0, 20), x)


def test_dynamic_range_gain_keeps_the_peak_and_raises_the_floor() -> None:
    x = _db()
    torch.manual_seed(2)
    y = dynamic_range_gain(x, gain_db=30.0, top_db=80.0)
    assert torch.allclose(y.amax(dim=(1, 2, 3)), torch.zeros(4))  # peak stays at 0 dB
    floors = y.amin(dim=(1, 2, 3))
    assert torch.all(floors >= -80.0) and torch.all(floors <= -50.0 + 1e-4)
    keep = x >= floors.view(-1, 1, 1, 1)
    assert torch.allclose(y[keep], x[keep], atol=1e-4)  # cells above the new floor are kept (float error)
    assert torch.equal(dynamic_range_gain(x, 0.0, 80.0), x)


def test_mixup_is_a_convex_combination() -> None:
    # example i is the constant i, so each mixed example reveals which partner it was mixed with
    n = 6
    x = torch.arange(n, dtype=torch.float64).view(n, 1, 1, 1).expand(n, 1, 4, 5).clone()
    yl = torch.tensor([0, 1, 2, 0, 1, 2])
    torch.manual_seed(3)
    mixed, ya, yb, lam = mixup(x, yl, alpha=0.4)
    assert 0.0 < lam < 1.0 and torch.equal(ya, yl)
    partner = (mixed[:, 0, 0, 0] - lam * x[:, 0, 0, 0]) / (1.0 - lam)
    perm = partner.round().long()
    assert torch.allclose(partner, perm.double(), atol=1e-9)  # a whole example, not a blend of several
    assert sorted(perm.tolist()) == list(range(n))  # every example is some pair's partner once
    # mixed = lam * x + (1 - lam) * x[perm] everywhere, and the second label is the partner's
    assert torch.allclose(mixed, lam * x + (1.0 - lam) * x[perm], atol=1e-12)
    assert torch.equal(yb, yl[perm])


def test_batched_read_equals_single_reads_in_sampler_order(tmp_path: Path) -> None:
    feats = np.random.default_rng(0).normal(size=(20, 16, 9)).astype(np.float16)
    np.save(tmp_path / "features.npy", feats)
    ds = CachedWindows(tmp_path / "features.npy", np.arange(5, 20), np.arange(15) % 3)
    order = [7, 2, 11, 0, 14]
    xb, yb, ib = _collate(ds.__getitems__(order))
    xs, ys, is_ = _collate([ds[i] for i in order])
    assert torch.equal(xb, xs) and torch.equal(yb, ys) and torch.equal(ib, is_)
    assert xb.shape == (5, 1, 16, 9) and xb.dtype == torch.float32
    assert torch.equal(xb[0, 0], torch.from_numpy(feats[12].astype(np.float32)))


def test_class_weights_are_inverse_frequencies_with_mean_one() -> None:
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    assert class_counts(labels, 4).tolist() == [6, 3, 1, 0]
    w = inverse_frequency_weights(labels, 4)
    assert w[3] == 0.0
    assert np.isclose(np.mean(w[:3]), (10 / 3) * (1 / 6 + 1 / 3 + 1) / 3)
    assert w[2] / w[0] == 6.0
