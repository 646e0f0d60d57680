"""``vocalis embed``: per-window embeddings of recordings, for users' own analyses (clustering, search, UMAP).

One parquet row per window: ``file``, ``start_s``, ``end_s``, ``vector`` (a list of float32), from a named
backbone or from any vocalis artifact with an ``embedding`` output. Windows are cut as the predictor cuts
them (:class:`vocalis.contracts.windows.WindowSpec`: every hop from 0, the last one zero-padded); a file
that cannot be decoded is reported and skipped, never stops the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vocalis import audio
from vocalis.contracts.discovery import find_audio_files
from vocalis.contracts.windows import WindowSpec
from vocalis.errors import ConfigError
from vocalis.transfer.backbones import load_backbone

log = logging.getLogger(__name__)


@dataclass
class EmbedResult:
    """What :func:`embed_files` wrote."""

    output: Path
    n_files: int
    n_windows: int
    dim: int
    backbone: str
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _inputs(paths: Sequence[Path], recursive: bool) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += find_audio_files(p, recursive=recursive)
        else:
            files.append(p)
    return files


def embed_files(
    model: str | Path,
    inputs: Sequence[Path],
    output: str | Path,
    *,
    recursive: bool = True,
    hop_s: float | None = None,
    threads: int = 1,
    progress: Any = None,
) -> EmbedResult:
    """Embed every window of every input with ``model`` and write ``output`` (parquet)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    backbone = load_backbone(model, threads=threads)
    spec = WindowSpec(backbone.window_s, hop_s or backbone.window_s, backbone.sample_rate)
    if spec.hop_s <= 0:
        raise ConfigError(f"--hop: must be positive, got {hop_s}")
    files = _inputs(inputs, recursive)
    rows: dict[str, list[Any]] = {"file": [], "start_s": [], "end_s": [], "vector": []}
    skipped: list[tuple[str, str]] = []
    for k, path in enumerate(files):
        try:
            x = audio.load(path, backbone.sample_rate)
            starts = spec.starts(len(x))
            vectors = backbone.embed(spec.cut(x))
            ends = spec.ends(starts, len(x))
            for s, e, v in zip(starts.tolist(), ends.tolist(), vectors, strict=True):
                rows["file"].append(str(path))
                rows["start_s"].append(s / backbone.sample_rate)
                rows["end_s"].append(e / backbone.sample_rate)
                rows["vector"].append(v.astype(np.float32))
        except audio.AudioDecodeError as exc:
            skipped.append((str(path), exc.reason))
        except OSError as exc:
            skipped.append((str(path), exc.strerror or str(exc)))
        if progress:
            progress("embedding", k + 1, len(files))
    table = pa.table(
        {
            "file": pa.array(rows["file"], pa.string()),
            "start_s": pa.array(rows["start_s"], pa.float64()),
            "end_s": pa.array(rows["end_s"], pa.float64()),
            "vector": pa.array(
                [v.tolist() for v in rows["vector"]], pa.list_(pa.float32(), backbone.embedding_dim)
            ),
        }
    )
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        table.replace_schema_metadata(
            {"vocalis.backbone": backbone.name, "vocalis.licence": backbone.licence}
        ),
        out,
    )
    return EmbedResult(
        out, len(files) - len(skipped), len(rows["file"]), backbone.embedding_dim, backbone.name, skipped
    )
