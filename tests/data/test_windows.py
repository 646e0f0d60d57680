"""Window arithmetic (vocalis.contracts.windows) and the training rule for trailing partial windows."""

from __future__ import annotations

import numpy as np
import pytest

from vocalis.contracts.windows import WindowSpec
from vocalis.data.prepare import window_starts


def test_counts_starts_and_bounds() -> None:
    spec = WindowSpec(3.0, 1.5, 1000)
    assert (spec.window_samples, spec.hop_samples) == (3000, 1500)
    assert spec.count(0) == 1 and spec.count(2999) == 1 and spec.count(3000) == 1
    assert spec.count(3001) == 2 and spec.count(4500) == 2 and spec.count(4501) == 3
    assert spec.starts(7000).tolist() == [0, 1500, 3000, 4500]
    assert spec.bounds_seconds(7000)[-1] == (4.5, 7.0)
    assert spec.bounds_seconds(1000) == [(0.0, 1.0)]


def test_cut_pads_the_last_window_with_zeros() -> None:
    spec = WindowSpec(1.0, 0.5, 10)
    x = np.arange(1, 24, dtype=np.float32)  # 23 samples: windows at 0, 5, 10, 15; the last has 8 + 2 zeros
    w = spec.cut(x)
    assert w.shape == (4, 10)
    np.testing.assert_array_equal(w[1], x[5:15])
    np.testing.assert_array_equal(w[-1], np.r_[x[15:], 0, 0])


def test_short_clip_is_one_zero_padded_window() -> None:
    w = WindowSpec(1.0, 1.0, 8).cut(np.ones(3, np.float32))
    assert w.shape == (1, 8) and w.sum() == 3


@pytest.mark.parametrize(
    ("n", "expected"),
    [(500, [0]), (1000, [0]), (1200, [0]), (1499, [0]), (1500, [0, 1000]), (2600, [0, 1000, 2000])],
)
def test_training_rule_drops_a_tail_under_half_a_window(n: int, expected: list[int]) -> None:
    assert window_starts(WindowSpec(1.0, 1.0, 1000), n).tolist() == expected


def test_with_half_window_hop_no_tail_is_ever_dropped() -> None:
    spec = WindowSpec(3.0, 1.5, 100)
    for n in range(1, 2000, 7):
        assert len(window_starts(spec, n)) == spec.count(n)


def test_invalid_specs_raise() -> None:
    with pytest.raises(ValueError):
        WindowSpec(0.0, 1.0, 100)
    with pytest.raises(ValueError):
        WindowSpec(1.0, -1.0, 100)
