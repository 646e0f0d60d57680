"""A compact, fixed summary of the network's penultimate-layer embedding, for drift monitoring.

A recording's embedding is the mean of its windows' ``embedding`` outputs (``D`` values, 256 for the
compact CNN at width 16, 512 for a ResNet). Logging all of them for every prediction would bloat the log,
so the service and the reference keep a Gaussian random projection of it to :data:`EMBEDDING_DIMS` values
(Johnson-Lindenstrauss: distances between embeddings survive the projection up to a small distortion, and
a shift of the embedding's distribution shows in the projected coordinates). The projection matrix is a
pure function of ``D`` and a fixed seed, so the service computes the same coordinates as the reference
without reading anything but the model's output; drift runs a two-sample test on each coordinate.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: projected coordinates kept per recording (each gets its own drift test)
EMBEDDING_DIMS = 8
#: seed of the projection matrix: changing it makes logged coordinates incomparable with references
EMBEDDING_SEED = 10
#: the reference's and the expanded log's column names: EMB_PREFIX + coordinate index
EMB_PREFIX = "emb:"
EMBEDDING_COLUMNS: tuple[str, ...] = tuple(f"{EMB_PREFIX}{i}" for i in range(EMBEDDING_DIMS))


@lru_cache(maxsize=8)
def projection_matrix(input_dims: int, dims: int = EMBEDDING_DIMS, seed: int = EMBEDDING_SEED) -> np.ndarray:
    """The ``[input_dims, dims]`` Gaussian projection (entries N(0, 1/input_dims)), the same every call."""
    rng = np.random.default_rng([seed, input_dims])
    matrix = rng.standard_normal((input_dims, dims)) / np.sqrt(input_dims)
    matrix.setflags(write=False)
    return matrix


def embedding_summary(embedding: np.ndarray | None) -> list[float] | None:
    """The logged summary of one recording's mean embedding ``[D]``: its :data:`EMBEDDING_DIMS` projected
    coordinates (``None`` when the model gave no embedding)."""
    if embedding is None:
        return None
    vec = np.asarray(embedding, dtype=np.float64).reshape(-1)
    if vec.size == 0 or not np.isfinite(vec).all():
        return None
    return [round(float(v), 6) for v in vec @ projection_matrix(vec.size)]


def describe_projection(input_dims: int) -> dict[str, object]:
    """What a reference records about its projection (so a mismatch can be recognised)."""
    return {
        "method": "gaussian random projection of the mean window embedding",
        "input_dims": int(input_dims),
        "dims": EMBEDDING_DIMS,
        "seed": EMBEDDING_SEED,
    }
