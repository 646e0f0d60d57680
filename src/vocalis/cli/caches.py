"""How the CLI shows a prepared window cache (features or embeddings): counts, skipped files, where."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # the CLI imports this module at start: numpy comes with the command that needs it
    from vocalis.contracts.cache import WindowCache


def print_cache(out: Console, cache: WindowCache, *, kind: str, details: Sequence[str] = ()) -> None:
    """Windows per class and split with totals, the skipped files by reason, then ``details`` lines, the
    directory, hash and time. Reads only the cache's small tables (no pandas)."""
    meta = cache.meta
    if not cache.built:
        out.print(f"[green]{kind} is current[/] (nothing to do)")
    counts = cache.counts()
    table = Table(title=f"windows per class and split ({meta['n_clips']} clips, {meta['n_windows']} windows)")
    table.add_column("class")
    for split in counts:
        table.add_column(split, justify="right")
    table.add_column("total", justify="right")
    for label in cache.classes:
        row = [counts[split][label] for split in counts]
        table.add_row(label, *map(str, row), str(sum(row)))
    per_split = [sum(by_label.values()) for by_label in counts.values()]
    table.add_row("[bold]all", *[f"[bold]{n}" for n in per_split], f"[bold]{sum(per_split)}")
    out.print(table)
    n_skipped = int(meta["n_skipped"])
    if n_skipped:
        out.print(f"[yellow]skipped {n_skipped} file(s)[/] (listed in {cache.dir / 'skipped.csv'}):")
        for reason, n in cache.skip_reasons().most_common(10):
            out.print(f"  {n:5d}  {reason}", highlight=False)
    else:
        out.print("skipped 0 files")
    for line in details:
        out.print(line, highlight=False)
    out.print(f"cache  {cache.dir}")
    out.print(f"hash   {cache.hash}")
    out.print(f"time   {cache.seconds:.1f} s ({'built' if cache.built else 'reused'})")
