"""Resumable prediction output: chunks committed by write-then-rename, and a journal of the files done.

A run over thousands of files must survive being killed (SIGKILL, a lost machine) and carry on where it
stopped: no file predicted twice, none left out, and the output readable at every moment. So:

- **The output is only ever replaced whole.** Each commit copies the committed output to a hidden temporary
  file next to it (``shutil.copyfile``: a kernel-side copy), appends the new chunk's rows (for JSON: puts the
  new file entries before the closing brackets), fsyncs and renames it over the output. A reader sees the
  previous commit or the next one, never half a row. For ``--format parquet`` the output is a directory (an
  append-only parquet dataset): each commit writes one new part under a hidden name and renames it.
- **The journal** (``OUT.journal.jsonl``, next to the output) gets one JSON line per commit, appended after
  the rename: the files the chunk completed and the output's committed size (or the part's name). A run killed
  between the rename and the journal line leaves an output a chunk longer than the journal says: on resume the
  output is cut back to the journal's size (the part deleted), and those files are predicted again, once.
  A journal line cut short by the kill is ignored for the same reason.
- **Resume** is the default when the output and its journal exist: files the journal lists are skipped, the
  others predicted and appended. The journal's first line records what shaped the rows (artifact, format,
  top-k, min-conf, hop); a resume with different ones is refused (``--overwrite`` starts over). Files that
  failed are not journalled: a resume tries them again (a file that was being copied in may be whole now).

The errors file (``OUT.errors.csv``) is rewritten the same way at each commit, with this run's errors.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from vocalis.errors import ConfigError
from vocalis.inference.file_result import file_result_json
from vocalis.inference.predictor import FilePrediction
from vocalis.inference.writers import CSV_COLUMNS, PredictionWriter

log = logging.getLogger(__name__)

#: journal format version (first line)
JOURNAL_VERSION = 1
#: the end of a JSON output: new file entries go before it
_JSON_TAIL = b"\n]}\n"
#: a commit happens after this many files at the latest ...
COMMIT_FILES = 256
#: ... or this many seconds (at least ten times the last commit's own cost, so copying stays a small share)
COMMIT_SECONDS = 2.0


def journal_path(out: Path) -> Path:
    """The journal of an output: ``OUT.journal.jsonl`` next to it."""
    return out.with_name(out.name + ".journal.jsonl")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(path: Path, data: bytes, *, keep: int | None = None) -> None:
    """Make ``path`` hold its first ``keep`` bytes (none when ``None``) followed by ``data``, by
    write-then-rename: a reader sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    if keep:
        shutil.copyfile(path, tmp)
        mode = "r+b"
    else:
        mode = "wb"
    with tmp.open(mode) as fh:
        if keep:
            fh.truncate(keep)
            fh.seek(keep)
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def read_journal(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """``(header, commits)`` of a journal; a last line cut short by a kill is left out."""
    if not path.is_file():
        return None, []
    lines = path.read_bytes().split(b"\n")
    records: list[dict[str, Any]] = []
    for line in lines[:-1]:  # the text after the last newline was never finished
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    if not records or records[0].get("journal") != JOURNAL_VERSION:
        raise ConfigError(f"{path}: not a vocalis prediction journal (delete it or use --overwrite)")
    return records[0], records[1:]


class ResumableOutput:
    """Writes predictions to ``out`` in committed chunks with a journal; see the module notes.

    Args:
        out: the output file (a directory for ``parquet``).
        fmt: csv, json, raven or parquet.
        key: what shaped the rows (a resume with a different key is refused).
        model: the JSON output's ``model`` block.
        overwrite: start over even when a journal exists.
        low_freq, high_freq: the Raven table's frequency band.
        include_probs: per-window class probabilities in JSON.
        commit_s: seconds between commits (at least ten times the last commit's cost).
    """

    def __init__(
        self,
        out: Path,
        fmt: str,
        *,
        key: dict[str, Any],
        model: dict[str, Any],
        overwrite: bool = False,
        low_freq: float = 0.0,
        high_freq: float = 0.0,
        include_probs: bool = False,
        commit_s: float = COMMIT_SECONDS,
    ) -> None:
        self.out, self.fmt, self.model = Path(out), fmt, model
        self.low_freq, self.high_freq, self.include_probs = low_freq, high_freq, include_probs
        self.journal = journal_path(self.out)
        self.key = json.loads(json.dumps(key))  # as it reads back from the journal
        self.done: set[str] = set()
        self.size = 0  # committed bytes of the output (file formats)
        self.rows = 0  # committed rows (Raven numbers selections across runs)
        self.entries = 0  # committed JSON file entries
        self.parts = 0  # committed parquet parts
        self.resumed = False
        self._pending: list[FilePrediction] = []
        self._errors: list[tuple[str, str]] = []
        self._last_commit = time.monotonic()
        self._commit_s = commit_s
        self._interval = commit_s
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if overwrite:
            self._remove_all()
        self._open()

    # -- start: fresh or resumed --------------------------------------------------------------------
    def _remove_all(self) -> None:
        if self.out.is_dir() and self.fmt == "parquet":
            shutil.rmtree(self.out)
        elif self.out.exists() and not self.out.is_dir():
            self.out.unlink()
        self.journal.unlink(missing_ok=True)

    def _open(self) -> None:
        header, commits = read_journal(self.journal)
        if header is None:
            if self.out.exists():
                raise ConfigError(
                    f"{self.out}: exists and has no journal ({self.journal.name}) to resume from; "
                    "use --overwrite to replace it"
                )
            self._start()
            return
        if header.get("key") != self.key or header.get("format") != self.fmt:
            theirs = {**header.get("key", {}), "format": header.get("format")}
            ours = {**self.key, "format": self.fmt}
            diff = ", ".join(
                f"{k}: {theirs.get(k)!r} -> {ours.get(k)!r}" for k in ours if theirs.get(k) != ours[k]
            )
            raise ConfigError(
                f"{self.out}: was written with other settings ({diff}); use --overwrite to start over"
            )
        files = [f for c in commits for f in c.get("files", [])]
        if not self.out.exists():
            if files:
                raise ConfigError(
                    f"{self.out}: missing, but its journal lists {len(files)} finished file(s); "
                    "use --overwrite to start over"
                )
            self.journal.unlink()
            self._start()
            return
        last = commits[-1] if commits else {}
        self.done = set(files)
        self.size = int(last.get("size", 0))
        self.rows = int(last.get("rows", 0))
        self.entries = int(last.get("entries", 0))
        self.parts = int(last.get("parts", 0))
        self.resumed = True
        self._recover()
        log.info("%s: resuming, %d file(s) already done", self.out, len(self.done))

    def _start(self) -> None:
        """A fresh output: the journal's header, then an output with no rows (valid from the start)."""
        with self.journal.open("w") as fh:
            fh.write(json.dumps({"journal": JOURNAL_VERSION, "format": self.fmt, "key": self.key}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if self.fmt == "parquet":
            self.out.mkdir(parents=True, exist_ok=True)
            self.size = 0
        else:
            head = self._header()
            replace_atomically(self.out, head)
            self.size = len(head)
        self._append_journal({"files": [], "size": self.size, "rows": 0, "entries": 0, "parts": 0})

    def _recover(self) -> None:
        """Cut the output back to what the journal says was committed (a kill may leave one chunk more)."""
        if self.fmt == "parquet":
            keep = {_part_name(i) for i in range(self.parts)}
            for p in self.out.iterdir():
                if p.name not in keep:
                    log.info("%s: removing %s, written after the last journal entry", self.out, p.name)
                    p.unlink()
            return
        actual = self.out.stat().st_size
        if actual < self.size:
            raise ConfigError(
                f"{self.out}: shorter ({actual} bytes) than its journal says ({self.size}); "
                "use --overwrite to start over"
            )
        if actual > self.size:
            log.info("%s: cutting back an uncommitted chunk (%d bytes)", self.out, actual - self.size)
            if self.fmt == "json":
                replace_atomically(self.out, _JSON_TAIL, keep=self.size - len(_JSON_TAIL))
            else:
                replace_atomically(self.out, b"", keep=self.size)

    def _header(self) -> bytes:
        if self.fmt == "json":
            return b'{"model": ' + json.dumps(self.model).encode() + b', "files": [' + _JSON_TAIL
        text = io.StringIO()
        PredictionWriter(self.fmt, text)  # writes the header line
        return text.getvalue().encode()

    # -- adding and committing ----------------------------------------------------------------------
    def add(self, fp: FilePrediction) -> None:
        """Queue a finished file; committed with the next chunk."""
        self._pending.append(fp)
        self._maybe_commit()

    def add_error(self, path: str, reason: str) -> None:
        """Record a file that could not be predicted (written to the errors file at the next commit)."""
        self._errors.append((path, reason))

    @property
    def errors(self) -> list[tuple[str, str]]:
        """This run's errors so far."""
        return list(self._errors)

    def _maybe_commit(self) -> None:
        if len(self._pending) >= COMMIT_FILES or time.monotonic() - self._last_commit >= self._interval:
            self.commit()

    def commit(self) -> None:
        """Write the pending files to the output (write-then-rename), then journal them, then the errors."""
        t0 = time.monotonic()
        pending, self._pending = self._pending, []
        record: dict[str, Any] = {"files": [fp.file for fp in pending]}
        if pending:
            if self.fmt == "parquet":
                self._commit_parquet(pending)
            else:
                self._commit_file(pending)
        record.update(size=self.size, rows=self.rows, entries=self.entries, parts=self.parts)
        if pending:
            self._append_journal(record)
            self.done.update(record["files"])
        self._write_errors()
        cost = time.monotonic() - t0
        self._last_commit = time.monotonic()
        self._interval = max(self._commit_s, 10 * cost)

    def _commit_file(self, pending: list[FilePrediction]) -> None:
        if self.fmt == "json":
            entries = [json.dumps(file_result_json(fp, include_probs=self.include_probs)) for fp in pending]
            sep = b",\n" if self.entries else b"\n"
            data = sep + ",\n".join(entries).encode() + _JSON_TAIL
            replace_atomically(self.out, data, keep=self.size - len(_JSON_TAIL))
            self.entries += len(entries)
            self.size += len(data) - len(_JSON_TAIL)
            return
        text = io.StringIO()
        writer = PredictionWriter(
            self.fmt, text, low_freq=self.low_freq, high_freq=self.high_freq, header=False
        )
        writer.rows = self.rows  # Raven numbers its selections through the whole table
        for fp in pending:
            writer.write(fp)
        data = text.getvalue().encode()
        replace_atomically(self.out, data, keep=self.size)
        self.size += len(data)
        self.rows = writer.rows

    def _commit_parquet(self, pending: list[FilePrediction]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols: dict[str, list[Any]] = {c: [] for c in CSV_COLUMNS}
        for fp in pending:
            for w in fp.windows:
                for rank, (label, conf) in enumerate(w.top, start=1):
                    cols["file"].append(fp.file)
                    cols["start_s"].append(round(w.start_s, 6))
                    cols["end_s"].append(round(w.end_s, 6))
                    cols["label"].append(label)
                    cols["confidence"].append(round(float(conf), 6))
                    cols["rank"].append(rank)
        table = pa.table(cols, schema=_parquet_schema())
        name = _part_name(self.parts)
        tmp = self.out / f".{name}.tmp"  # a leading dot: dataset readers skip it
        pq.write_table(table, tmp)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.out / name)
        _fsync_dir(self.out)
        self.parts += 1
        self.rows += table.num_rows

    def _append_journal(self, record: dict[str, Any]) -> None:
        with self.journal.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _write_errors(self) -> None:
        from vocalis.inference.writers import errors_path

        text = io.StringIO()
        w = csv.writer(text, lineterminator="\n")
        w.writerow(["file", "reason"])
        w.writerows(self._errors)
        replace_atomically(errors_path(self.out), text.getvalue().encode())

    def close(self) -> None:
        """Commit what is pending."""
        self.commit()


def _part_name(i: int) -> str:
    return f"part-{i:06d}.parquet"


def _parquet_schema() -> Any:
    """The parquet output's columns: the CSV's, typed."""
    import pyarrow as pa

    return pa.schema(
        [
            ("file", pa.string()),
            ("start_s", pa.float64()),
            ("end_s", pa.float64()),
            ("label", pa.string()),
            ("confidence", pa.float64()),
            ("rank", pa.int32()),
        ]
    )
