"""The Predictor feeds consecutive windows to a stream graph as streams, whoever cut them.

The engines (local and Ray) hand :meth:`Predictor.predict_windows` batches of windows cut from one or more
recordings; runs of windows that continue each other at the graph's stream hop become stream rows, so the
shared STFT frames are computed once. These tests use the session's real exported artifact (1 s windows,
hop 0.5 s at 16 kHz): a mixed batch gives the probabilities (and embeddings) of one window a row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from support.runs import SR, call
from vocalis.inference import Predictor

#: the same windows as streams and one a row: max |Δprob| (the export's fp32 parity tolerance)
SAME_TOL = 1e-5


@pytest.fixture(scope="module")
def pair(artifact: Path) -> tuple[Predictor, Predictor]:
    """The artifact's Predictor, and the same artifact told its graph takes no streams (one window a row)."""
    streams = Predictor.from_dir(artifact, threads=1, batch_size=4)
    rows = Predictor.from_dir(artifact, threads=1, batch_size=4)
    rows._stream_hop = None  # what a card without stream_hop_samples gives
    assert streams.card.stream_hop_samples == SR // 2
    return streams, rows


def _windows(seconds: float, seed: int) -> np.ndarray:
    """The windows of a recording of calls, cut at the card's hop (1 s windows every 0.5 s)."""
    rng = np.random.default_rng(seed)
    wave = np.concatenate([call(c, seconds / 3, SR, rng) for c in ("alpha", "beta", "gamma")])
    n = (len(wave) - SR) // (SR // 2) + 1
    return np.stack([wave[i * SR // 2 : i * SR // 2 + SR] for i in range(n)]).astype(np.float32)


def test_runs_of_consecutive_windows_are_found_from_the_samples(pair: tuple[Predictor, Predictor]) -> None:
    streams, rows = pair
    a, b = _windows(6.0, 1), _windows(4.5, 2)
    lone = np.random.default_rng(3).standard_normal((1, SR)).astype(np.float32) * 0.1
    # two recordings back to back, a window out of order, a lone window
    x = np.concatenate([a[:5], b, a[7:], lone, a[5:6]])
    runs = streams._stream_runs(x)
    assert runs == [
        (0, 5),
        (5, 5 + len(b)),
        (5 + len(b), len(x) - 2),
        (len(x) - 2, len(x) - 1),
        (len(x) - 1, len(x)),
    ]
    assert rows._stream_runs(x) == [(i, i + 1) for i in range(len(x))]  # no stream graph: one a row


def test_mixed_batches_equal_one_window_a_row(pair: tuple[Predictor, Predictor]) -> None:
    streams, rows = pair
    a, b = _windows(6.0, 4), _windows(3.0, 5)
    x = np.concatenate([a, b[::-1], a[2:3]])  # a run of 11 (3 stream rows of 4), reversed windows, a repeat
    got, want = streams.predict_windows(x), rows.predict_windows(x)
    assert got.shape == want.shape == (len(x), 3)
    assert float(np.abs(got - want).max()) <= SAME_TOL
    probs, emb = streams.predict_windows_embedded(x)
    probs_rows, emb_rows = rows.predict_windows_embedded(x)
    assert float(np.abs(probs - probs_rows).max()) <= SAME_TOL
    assert emb.shape == emb_rows.shape and float(np.abs(emb - emb_rows).max()) <= 1e-4
    assert streams.predict_windows(x[:0]).shape == (0, 3)
