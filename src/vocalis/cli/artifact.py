"""CLI commands of the artifact stage: ``vocalis export`` (needs torch) and ``vocalis predict`` (never torch).

Both only parse options, call the core function and render; heavy imports live inside the command bodies.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vocalis.errors import ConfigError, VocalisError

if TYPE_CHECKING:
    from vocalis.inference.writers import PredictionWriter

console = Console(stderr=True)


def export(
    run_dir: Path = typer.Argument(
        ..., help="Training run directory (checkpoints/{best,last}.ckpt) or a .ckpt file."
    ),
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        help="Artifact directory to write: new, empty, or an existing artifact with --overwrite.",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing artifact (model.onnx + model.json) at --output."
    ),
    checkpoint: str = typer.Option(
        "best", "--checkpoint", "-c", help="Which checkpoint of the run: best or last."
    ),
    quantize: str | None = typer.Option(
        None,
        "--quantize",
        help="'int8': static int8 quantization, accepted only if test accuracy drops <= the gate.",
    ),
    opset: int = typer.Option(18, "--opset", help="ONNX opset version."),
    force: bool = typer.Option(
        False, "--force", help="Keep an int8 model even when it fails the accuracy gate."
    ),
    max_drop: float = typer.Option(
        0.01,
        "--max-drop",
        min=0.0,
        max=1.0,
        help="int8 gate: largest accepted test-accuracy drop, a fraction (0.01 = 1 point).",
    ),
    quant_format: str = typer.Option("qdq", "--quant-format", help="int8 graph format: qdq or qoperator."),
    calibration_windows: int = typer.Option(
        256, "--calibration-windows", help="Training windows for calibration."
    ),
    calibration_audio: Path | None = typer.Option(
        None,
        "--calibration-audio",
        help="Folder of recordings to calibrate int8 on instead of training audio.",
    ),
    prune_amount: float = typer.Option(
        0.0, "--prune-amount", min=0.0, max=1.0, help="Fraction of weights to prune, 0-1 (0 = none)."
    ),
    prune_structured: bool = typer.Option(False, "--prune-structured", help="Prune whole channels (L2)."),
    finetune_epochs: int = typer.Option(
        0, "--finetune-epochs", help="Fine-tune on cached features after pruning."
    ),
    stft: str = typer.Option(
        "matmul",
        "--stft",
        help="How LogMel in the graph computes its STFT: matmul (faster in onnxruntime) or fft (STFT op).",
    ),
    name: str | None = typer.Option(None, "--name", help="Model name in the card (default: the run's name)."),
) -> None:
    """Export a trained run to ONNX (featurizer inside) with a model card, after parity and graph checks."""
    if (run_dir / "transfer.json").is_file():  # a transfer run: backbone + head (vocalis.transfer.export)
        from vocalis.cli.transfer import export_transfer_command

        export_transfer_command(run_dir, output, overwrite, name)
        return
    from vocalis.export.onnx import export_artifact

    with console.status(f"Exporting {run_dir} ..."):
        result = export_artifact(
            run_dir,
            output,
            overwrite=overwrite,
            checkpoint=checkpoint,
            quantize=quantize,
            opset=opset,
            force=force,
            max_accuracy_drop=max_drop,
            calibration_windows=calibration_windows,
            quant_format=quant_format,
            prune_amount=prune_amount,
            prune_structured=prune_structured,
            finetune_epochs=finetune_epochs,
            name=name,
            stft=stft,
            calibration_audio=calibration_audio,
        )
    card, parity = result.card, result.parity
    table = Table(title=f"Exported {card.name} {card.version}", show_header=False)
    table.add_row("artifact", str(result.directory))
    table.add_row("architecture", card.architecture)
    table.add_row(
        "classes",
        f"{len(card.classes)}: {', '.join(card.classes[:8])}{' ...' if len(card.classes) > 8 else ''}",
    )
    table.add_row(
        "input",
        escape(f"waveform [batch, {card.window_samples}] = {card.window_s:g} s at {card.sample_rate} Hz"),
    )
    table.add_row(
        "fp32 parity",
        escape(
            f"max |Δprob| {parity['max_abs_diff']:.2e} <= {parity['tolerance']:g} on {parity['n_windows']} "
            f"{parity['windows']} windows"
        ),
    )
    if result.quantization:
        q = result.quantization
        table.add_row(
            "int8", f"{q['method']} ({q['format']}), {q['calibration_windows']} calibration windows"
        )
        if q.get("fp32_accuracy") is not None:
            table.add_row(
                "test accuracy",
                f"fp32 {q['fp32_accuracy']:.2%}  int8 {q['int8_accuracy']:.2%}  "
                f"(drop {100 * q['accuracy_drop']:.2f} points, "
                f"allowed {100 * q['max_accuracy_drop']:.2f}{', FORCED' if q['forced'] else ''})",
            )
        else:
            table.add_row("test accuracy", "not checked (no test audio; forced)")
    if card.optimization.get("pruning"):
        table.add_row("pruning", escape(str(card.optimization["pruning"])))
    size = (result.directory / "model.onnx").stat().st_size
    table.add_row("model.onnx", f"{size / 1e6:.2f} MB")
    if card.metrics:
        table.add_row(
            "run metrics", ", ".join(f"{k}={v:.4g}" for k, v in card.metrics.items() if isinstance(v, float))
        )
    else:  # metrics.json is missing or evaluates another checkpoint of the run
        table.add_row("run metrics", "none for this checkpoint (the card records none)")
    Console().print(table)


def predict(
    artifact_dir: Path = typer.Argument(..., help="Exported model directory (model.onnx + model.json)."),
    inputs: list[Path] = typer.Argument(..., help="Audio files and/or folders."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Search folders recursively."),
    fmt: str = typer.Option(
        "csv", "--format", "-f", help="Output format: csv, json or raven (selection table)."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Output file (default: standard output)."
    ),
    min_conf: float = typer.Option(
        0.0, "--min-conf", min=0.0, max=1.0, help="Leave out labels below this probability (0-1)."
    ),
    top_k: int = typer.Option(3, "--top-k", help="Labels kept per window."),
    window: float | None = typer.Option(
        None, "--window", help="Window seconds; must equal the model's window."
    ),
    hop: float | None = typer.Option(
        None, "--hop", help="Seconds between window starts (default: the card's)."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Windows per inference batch (default: ~24 s of audio, at most 16)."
    ),
    threads: int | None = typer.Option(
        None, "--threads", help="Inference threads (default: all CPUs available)."
    ),
    block_s: float = typer.Option(60.0, "--block-seconds", help="Seconds of audio decoded at a time."),
    strict: bool = typer.Option(False, "--strict", help="Exit non-zero if any input could not be processed."),
) -> None:
    """Predict species in recordings of any length; bad files are reported and skipped.

    Writes CSV (file,start_s,end_s,label,confidence,rank), JSON or one combined Raven Pro selection table;
    undecodable or unsupported files go to OUT.errors.csv next to the output. Exit code 0 when at least one
    file was processed (with --strict: only when every input was).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from vocalis.audio import info as read_header
    from vocalis.inference import Predictor
    from vocalis.inference.writers import FORMATS, PredictionWriter, errors_path, find_inputs, write_errors

    if fmt not in FORMATS:
        raise ConfigError(f"format: choose one of {', '.join(FORMATS)}, got '{fmt}'")
    if top_k < 1:
        raise ConfigError(f"top-k: must be at least 1, got {top_k}")
    predictor = Predictor.from_dir(artifact_dir, threads=threads, batch_size=batch_size)
    predictor.window_spec(window, hop)  # refuse a bad window/hop before touching any file
    files, errors = find_inputs(inputs, recursive)
    for path, reason in errors:
        console.print(f"[yellow]skipped[/] {path}: {reason}", highlight=False)

    durations: dict[Path, float] = {}
    readable: list[Path] = []
    for f in files:
        try:
            durations[f] = read_header(f).duration
            readable.append(f)
        except VocalisError as exc:
            errors.append((str(f), getattr(exc, "reason", str(exc))))
            console.print(f"[yellow]skipped[/] {exc}", highlight=False)

    feats = predictor.card.features
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
    out_stream = output.open("w", newline="") if output else sys.stdout
    writer: PredictionWriter = PredictionWriter(
        fmt,
        out_stream,
        low_freq=float(feats.get("f_min", 0.0)),
        high_freq=float(feats.get("f_max", predictor.sample_rate / 2)),
        model={"name": predictor.card.name, "version": predictor.version, "classes": predictor.classes},
    )
    done: list[tuple[str, str, float]] = []
    total_audio = sum(durations.values())
    t0 = time.perf_counter()
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        ) as progress:
            t_files = progress.add_task("files", total=len(readable))
            t_audio = progress.add_task("audio s", total=round(total_audio))
            base = 0.0
            for f in readable:
                try:
                    fp = predictor.predict_stream(
                        f,
                        window_s=window,
                        hop_s=hop,
                        top_k=top_k,
                        min_conf=min_conf,
                        block_s=block_s,
                        on_progress=lambda s, b=base: progress.update(t_audio, completed=round(b + s)),  # type: ignore[misc]
                    )
                except VocalisError as exc:
                    errors.append((str(f), getattr(exc, "reason", str(exc))))
                    progress.console.print(f"[yellow]skipped[/] {exc}", highlight=False)
                else:
                    writer.write(fp)
                    done.append((str(f), fp.summary.top_label, fp.summary.top_confidence))
                base += durations[f]
                progress.update(t_audio, completed=round(base))
                progress.advance(t_files)
        writer.close()
    finally:
        if output:
            out_stream.close()
    elapsed = time.perf_counter() - t0
    if output:
        write_errors(errors_path(output), errors)

    if len(done) <= 20:
        table = Table(title="Top label per file")
        for col in ("file", "top label", "max prob"):
            table.add_column(col)
        for path, label, conf in done:
            table.add_row(path, label, f"{conf:.3f}")
        if done:
            console.print(table)
    rtf = elapsed / total_audio if total_audio else 0.0
    console.print(
        f"{len(done)} file(s) predicted, {len(errors)} skipped; "
        f"{total_audio:.1f} s of audio in {elapsed:.1f} s (real-time factor {rtf:.4f}); {writer.rows} rows"
        + (f" -> {output} (errors: {errors_path(output)})" if output else ""),
        highlight=False,
    )
    if not done or (strict and errors):
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add ``export`` and ``predict`` to the root app."""
    app.command("export")(export)
    app.command("predict")(predict)
