"""Writing predictions: CSV, JSON and Raven Pro selection tables, plus the errors file; finding inputs.

Formats (one row per window and label kept by ``top_k``/``min_conf``):

- CSV: ``file,start_s,end_s,label,confidence,rank``;
- JSON: ``{"model": {...}, "files": [file_result_json(fp), ...]}`` (the shape the HTTP API answers with, see
  :mod:`vocalis.inference.file_result`);
- Raven: ONE combined tab-separated selection table for all inputs, columns ``Selection, View, Channel,
  Begin Time (s), End Time (s), Low Freq (Hz), High Freq (Hz), Species, Confidence, Begin File``; times are
  relative to the start of the recording named in ``Begin File`` (its file name), the frequency band is the
  featurizer's ``f_min``-``f_max``. Selections are numbered across the whole table.

Torch-free: the standard library, the predictor's result types and the file walk of :mod:`vocalis.contracts`.
"""

from __future__ import annotations

import csv
import json
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from vocalis.contracts.discovery import describe_os_error, find_audio_files, special_file_reason
from vocalis.inference.file_result import file_result_json
from vocalis.inference.predictor import FilePrediction

FORMATS = ("csv", "json", "raven")
#: every output format of `vocalis predict -o`: parquet (a dataset directory) needs an output path
OUTPUT_FORMATS = (*FORMATS, "parquet")
CSV_COLUMNS = ["file", "start_s", "end_s", "label", "confidence", "rank"]
RAVEN_COLUMNS = [
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
    "Species",
    "Confidence",
    "Begin File",
]


def find_inputs(
    paths: Iterable[str | Path], recursive: bool = False
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files and folders into audio files; return ``(files, errors)``.

    A folder contributes its audio files (by extension; all levels with ``recursive``); other files in it
    are reported as unsupported. Hidden files and folders are ignored. Every input that will not be
    predicted is an error with its reason: a missing path, a dangling link, a link loop, a folder that
    cannot be listed, a pipe or device, a file without read permission.
    """
    files: list[Path] = []
    errors: list[tuple[str, str]] = []
    for raw in paths:
        path = Path(raw)
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            errors.append((str(path), describe_os_error(exc, path)))
            continue
        if stat.S_ISDIR(mode):
            others: list[Path] = []
            problems: list[tuple[Path, str]] = []
            files.extend(find_audio_files(path, recursive=recursive, others=others, problems=problems))
            errors.extend((str(p), f"unsupported file type '{p.suffix or '(none)'}'") for p in others)
            errors.extend((str(p), reason) for p, reason in problems)
        elif (reason := special_file_reason(mode)) is not None:
            errors.append((str(path), reason))
        else:
            files.append(path)
    seen: set[tuple[int, int]] = set()
    unique = []
    for f in files:  # a file named twice (or through two folders) is predicted once
        try:
            st = f.stat()
        except OSError as exc:  # gone since the walk
            errors.append((str(f), describe_os_error(exc, f)))
            continue
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, errors


def raven_text(value: str) -> str:
    """A value for a Raven selection table: a tab or line break in it would split the row, and Raven
    reads no quoting, so they are written as ``\\t``, ``\\n``, ``\\r`` (and a backslash as ``\\\\``)."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class PredictionWriter:
    """Writes :class:`FilePrediction` results to an open text stream in one of :data:`FORMATS`."""

    def __init__(
        self,
        fmt: str,
        stream: TextIO,
        *,
        low_freq: float = 0.0,
        high_freq: float = 0.0,
        model: dict[str, Any] | None = None,
        include_probs: bool = False,
        header: bool = True,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got '{fmt}'")
        self.fmt = fmt
        self.stream = stream
        self.low_freq, self.high_freq = low_freq, high_freq
        self.model = model or {}
        self.include_probs = include_probs
        self.rows = 0
        self._json: list[dict[str, Any]] = []
        self._csv: Any = None
        if fmt == "csv":
            self._csv = csv.writer(stream, lineterminator="\n")
            if header:  # no header: rows appended to an output that has one (a resumed run)
                self._csv.writerow(CSV_COLUMNS)
        elif fmt == "raven" and header:
            # written by hand, not by a csv writer: Raven reads no quotes, and raven_text has removed
            # tabs and line breaks from the free-text columns
            stream.write("\t".join(RAVEN_COLUMNS) + "\n")

    def write(self, fp: FilePrediction) -> None:
        """Add one file's predictions (CSV and Raven rows are written at once; JSON at :meth:`close`)."""
        if self.fmt == "json":
            self._json.append(file_result_json(fp, include_probs=self.include_probs))
            self.rows += sum(len(w.top) for w in fp.windows)
            return
        begin_file = raven_text(Path(fp.file).name)
        for w in fp.windows:
            for rank, (label, conf) in enumerate(w.top, start=1):
                self.rows += 1
                if self.fmt == "csv":
                    self._csv.writerow(
                        [fp.file, f"{w.start_s:.4f}", f"{w.end_s:.4f}", label, f"{conf:.6f}", rank]
                    )
                else:
                    fields = [
                        self.rows,
                        "Spectrogram 1",
                        1,
                        f"{w.start_s:.4f}",
                        f"{w.end_s:.4f}",
                        f"{self.low_freq:.1f}",
                        f"{self.high_freq:.1f}",
                        raven_text(label),
                        f"{conf:.6f}",
                        begin_file,
                    ]
                    self.stream.write("\t".join(map(str, fields)) + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Finish the output (writes the JSON document)."""
        if self.fmt == "json":
            json.dump({"model": self.model, "files": self._json}, self.stream, indent=1)
            self.stream.write("\n")
        self.stream.flush()


def errors_path(out: Path) -> Path:
    """Where the errors of an output file go: ``OUT.errors.csv`` next to it."""
    return out.with_name(out.name + ".errors.csv")


def write_errors(path: Path, errors: list[tuple[str, str]]) -> None:
    """Write ``file,reason`` rows (header only when there were none)."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["file", "reason"])
        writer.writerows(errors)
