"""Reading `vocalis predict` outputs in tests."""

from __future__ import annotations

import csv
from pathlib import Path

#: the CSV output's columns, in order
CSV_HEADER = ["file", "start_s", "end_s", "label", "confidence", "rank"]


def strict_csv_rows(path: Path) -> list[dict[str, str]]:
    """Parse a CSV output strictly: the header, and every row with all six fields (a half-written row, as
    an interrupted run must never leave, fails the assertion)."""
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        assert header == CSV_HEADER
        rows = list(reader)
    for r in rows:
        assert len(r) == 6 and float(r[4]) >= 0 and int(r[5]) >= 1, r
    return [dict(zip(header, r, strict=True)) for r in rows]
