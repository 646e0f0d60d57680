"""What ``vocalis predict`` is asked to read: files, folders, manifests of paths, object-store URIs.

- a local file or folder: :func:`vocalis.inference.writers.find_inputs` (the project's audio file walk);
- a manifest: a ``.csv`` (a ``path`` column, else the first column), ``.parquet`` (a ``path`` column, else the
  first) or ``.txt`` (one path a line) file of paths, local or in an object store; relative local paths are
  relative to the manifest's folder;
- an object-store URI (``s3://``, ``gs://``, any scheme pyarrow's filesystems know): taken as one recording
  and read when it is decoded (its duration is unknown until then, so such files are never split into
  segments).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

from vocalis.inference.writers import find_inputs

MANIFEST_SUFFIXES = (".csv", ".parquet", ".txt")


def is_uri(path: str) -> bool:
    """True for ``scheme://...`` (an object-store location), false for a local path."""
    return "://" in path and not path.startswith("file://")


def _read_bytes(location: str) -> bytes:
    if not is_uri(location):
        return Path(location.removeprefix("file://")).read_bytes()
    from pyarrow import fs as pafs

    filesystem, inner = pafs.FileSystem.from_uri(location)
    with filesystem.open_input_stream(inner) as fh:
        return bytes(fh.read())


def read_manifest(location: str) -> list[str]:
    """The paths a manifest lists, in order (see the module notes for the formats)."""
    data = _read_bytes(location)
    lower = location.lower()
    if lower.endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        column = "path" if "path" in table.column_names else table.column_names[0]
        paths = [str(p) for p in table.column(column).to_pylist() if p]
    elif lower.endswith(".csv"):
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
        if not rows:
            return []
        col = rows[0].index("path") if "path" in rows[0] else 0
        body = rows[1:] if "path" in rows[0] else rows
        paths = [r[col].strip() for r in body if len(r) > col and r[col].strip()]
    else:
        paths = [line.strip() for line in data.decode("utf-8-sig").splitlines() if line.strip()]
    if not is_uri(location):  # relative entries are relative to the manifest's own folder
        base = Path(location.removeprefix("file://")).parent
        paths = [p if is_uri(p) or Path(p).is_absolute() else str(base / p) for p in paths]
    return paths


def expand_inputs(
    inputs: Iterable[str], recursive: bool = False, *, manifests: bool = True
) -> tuple[list[str], list[tuple[str, str]]]:
    """Expand inputs into recordings; ``(paths, errors)`` where an error names the input and the reason."""
    paths: list[str] = []
    local: list[str] = []
    errors: list[tuple[str, str]] = []
    for raw in inputs:
        if manifests and raw.lower().endswith(MANIFEST_SUFFIXES):
            try:
                listed = read_manifest(raw)
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                errors.append((raw, f"cannot read the manifest ({exc})"))
                continue
            remote = [p for p in listed if is_uri(p)]
            paths.extend(remote)
            found, errs = find_inputs([p for p in listed if not is_uri(p)], recursive)
            paths.extend(str(f) for f in found)
            errors.extend(errs)
        elif is_uri(raw):
            paths.append(raw)
        else:
            local.append(raw)
    if local:
        found, errs = find_inputs(local, recursive)
        paths.extend(str(f) for f in found)
        errors.extend(errs)
    return paths, errors
