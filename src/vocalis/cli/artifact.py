"""CLI commands of the artifact stage: ``vocalis export`` (needs torch) and ``vocalis predict`` (never torch).

Both only parse options, call the core function and render; heavy imports live inside the command bodies.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vocalis.errors import ConfigError, VocalisError

if TYPE_CHECKING:
    from rich.progress import Progress, Task

    from vocalis.inference.resume import ResumableOutput
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
    transfer = (run_dir / "transfer.json").is_file()  # a transfer run: backbone + head (vocalis.transfer)
    if transfer:
        from vocalis.transfer.compose import export_composed, is_artifact_backbone_run

        # what shapes a trained network's graph has no meaning for a head on a pretrained backbone: say so
        # rather than export something other than what was asked for
        given = {
            "--checkpoint": checkpoint != "best",
            "--prune-amount": prune_amount > 0,
            "--prune-structured": prune_structured,
            "--finetune-epochs": finetune_epochs > 0,
            "--stft": stft != "matmul",
        }
        not_applicable = [flag for flag, set_ in given.items() if set_]
        if not is_artifact_backbone_run(run_dir):  # BirdNET: the two-part artifact
            from vocalis.cli.transfer import export_transfer_command

            export_transfer_command(
                run_dir,
                output,
                overwrite,
                name,
                opset=opset,
                quantize=quantize,
                not_applicable=not_applicable,
            )
            return
        if quantize:
            not_applicable.append("--quantize")
        if not_applicable:
            raise ConfigError(
                f"{', '.join(not_applicable)}: not applicable to a head on a vocalis artifact's embedding "
                f"({run_dir}); export it without them"
            )
    from vocalis.export.onnx import export_artifact

    result: Any  # ExportResult, or the composed transfer artifact's (same attributes)
    with console.status(f"Exporting {run_dir} ..."):
        if transfer:  # a head on a vocalis artifact's embedding: one ONNX graph (artifact graph + head)
            result = export_composed(run_dir, output, overwrite=overwrite, name=name)
        else:
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
    if card.get("backbone"):  # a head on another artifact's embedding: say whose, and its licence
        bb = card.get("backbone")
        table.add_row(
            "backbone", escape(f"{bb.get('name')} {bb.get('artifact_version')}, licence {bb.get('licence')}")
        )
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
    inputs: list[str] = typer.Argument(
        ...,
        help="Audio files, folders, manifests of paths (.csv/.parquet/.txt) and object-store URIs (s3://, gs://).",
    ),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Search folders recursively."),
    fmt: str = typer.Option(
        "csv",
        "--format",
        "-f",
        help="Output format: csv, json, raven (selection table) or parquet (a dataset directory; needs -o).",
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
        None, "--threads", help="Inference threads (default: all CPUs available; ray: per actor, 1)."
    ),
    block_s: float = typer.Option(60.0, "--block-seconds", help="Seconds of audio decoded at a time."),
    strict: bool = typer.Option(False, "--strict", help="Exit non-zero if any input could not be processed."),
    engine: str = typer.Option(
        "local", "--engine", help="local (decoding processes + batched inference here) or ray (Ray Data)."
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=0,
        help="local: decoding processes (default: none on 1-2 CPUs, else half the CPUs; 0: none).",
    ),
    address: str | None = typer.Option(
        None, "--address", help="ray: cluster address (auto, ray://host:10001); default: a local Ray."
    ),
    num_workers: int | None = typer.Option(
        None, "--num-workers", min=1, help="ray: actors (default: one per --threads CPUs of the cluster)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Carry on an interrupted run (the default whenever -o and its journal exist)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over: replace an existing -o output."),
    commit_s: float = typer.Option(
        2.0, "--commit-seconds", min=0.0, help="-o: seconds between committed chunks (work a kill can lose)."
    ),
) -> None:
    """Predict species in recordings of any length; bad files are reported and skipped.

    Writes CSV (file,start_s,end_s,label,confidence,rank), JSON, one combined Raven Pro selection table or a
    parquet dataset; undecodable or unsupported files go to OUT.errors.csv next to the output. With -o the run
    is resumable: an interrupted run started again skips the files already written (OUT.journal.jsonl).
    Exit code 0 when at least one file was processed (with --strict: only when every input was).
    """
    from vocalis.inference import Predictor
    from vocalis.inference.jobs import header_duration, plan_jobs
    from vocalis.inference.writers import OUTPUT_FORMATS, PredictionWriter, errors_path

    if fmt not in OUTPUT_FORMATS:
        raise ConfigError(f"format: choose one of {', '.join(OUTPUT_FORMATS)}, got '{fmt}'")
    if fmt == "parquet" and output is None:
        raise ConfigError("format: parquet writes a dataset directory; give it with -o")
    if top_k < 1:
        raise ConfigError(f"top-k: must be at least 1, got {top_k}")
    if engine not in ("local", "ray"):
        raise ConfigError(f"engine: choose local or ray, got '{engine}'")
    if resume and overwrite:
        raise ConfigError("resume: --resume and --overwrite contradict each other; choose one")
    if (resume or overwrite) and output is None:
        raise ConfigError("resume: --resume and --overwrite need an output file (-o)")
    if engine == "ray":
        from vocalis.inference.ray_engine import require_ray

        require_ray()  # before any work: say which extra to install
    predictor = Predictor.from_dir(
        artifact_dir, threads=threads if engine == "local" else 1, batch_size=batch_size
    )
    spec = predictor.window_spec(window, hop)  # refuse a bad window/hop before touching any file
    from vocalis.inference.sources import expand_inputs

    files, errors = expand_inputs(inputs, recursive)
    for path, reason in errors:
        console.print(f"[yellow]skipped[/] {escape(path)}: {escape(reason)}", highlight=False)

    feats = predictor.card.features
    low, high = float(feats.get("f_min", 0.0)), float(feats.get("f_max", predictor.sample_rate / 2))
    model = {"name": predictor.card.name, "version": predictor.version, "classes": predictor.classes}
    sink: ResumableOutput | None = None
    writer: PredictionWriter | None = None
    if output is not None:
        from vocalis.inference.resume import ResumableOutput

        key = {
            "artifact": predictor.version,
            "model": predictor.card.name,
            "top_k": top_k,
            "min_conf": min_conf,
            "hop_s": spec.hop_s,
        }
        sink = ResumableOutput(
            output,
            fmt,
            key=key,
            model=model,
            overwrite=overwrite,
            low_freq=low,
            high_freq=high,
            commit_s=commit_s,
        )
        if sink.done:
            console.print(f"resuming {output}: {len(sink.done)} file(s) already done", highlight=False)
        files = [f for f in files if f not in sink.done]
    else:
        writer = PredictionWriter(fmt, sys.stdout, low_freq=low, high_freq=high, model=model)

    durations: list[float] = []
    readable: list[str] = []
    for f in files:
        try:
            durations.append(header_duration(f))
            readable.append(f)
        except VocalisError as exc:
            errors.append((f, getattr(exc, "reason", str(exc))))
            console.print(f"[yellow]skipped[/] {escape(str(exc))}", highlight=False)
    if sink is not None:
        for path, reason in errors:
            sink.add_error(path, reason)
    jobs = plan_jobs(readable, durations, spec, block_s=block_s)
    if engine == "ray":
        from vocalis.inference.ray_engine import run_ray

        outcomes = run_ray(
            artifact_dir,
            jobs,
            spec,
            predictor.classes,
            top_k=top_k,
            min_conf=min_conf,
            address=address,
            num_workers=num_workers,
            threads=threads or 1,
            batch_size=batch_size,
        )
    else:
        from vocalis.inference.engine import LocalEngine

        outcomes = LocalEngine(predictor, workers=workers, batch_size=batch_size).run(
            jobs, spec, top_k=top_k, min_conf=min_conf
        )

    done: list[tuple[str, str, float]] = []
    seconds = dict(zip(readable, durations, strict=True))
    total_audio = sum(durations)
    rows = 0
    t0 = time.perf_counter()
    with _progress_bar() as progress:
        task = progress.add_task("predicting", total=len(readable), hours=0.0, total_h=total_audio / 3600)
        audio_done = 0.0
        for path, result in outcomes:
            if isinstance(result, str):
                errors.append((path, result))
                if sink is not None:
                    sink.add_error(path, result)
                progress.console.print(
                    f"[yellow]skipped[/] {escape(path)}: {escape(result)}", highlight=False
                )
            else:
                rows += sum(len(w.top) for w in result.windows)
                if sink is not None:
                    sink.add(result)
                else:
                    assert writer is not None
                    writer.write(result)
                done.append((path, result.summary.top_label, result.summary.top_confidence))
                seconds[path] = seconds.get(path) or result.duration_s
            audio_done += seconds.get(path, 0.0)
            progress.update(task, advance=1, hours=audio_done / 3600)
    if sink is not None:
        sink.close()
    elif writer is not None:
        writer.close()
    elapsed = time.perf_counter() - t0
    total_audio = sum(seconds.values())

    if len(done) <= 20:
        table = Table(title="Top label per file")
        for col in ("file", "top label", "max prob"):
            table.add_column(col)
        for path, label, conf in done:
            table.add_row(path, label, f"{conf:.3f}")
        if done:
            console.print(table)
    rtf = elapsed / total_audio if total_audio else 0.0
    rate = len(readable) / elapsed if elapsed else 0.0
    console.print(
        f"{len(done)} file(s) predicted, {len(errors)} skipped"
        + (f", {len(sink.done) - len(done)} done before" if sink is not None and sink.resumed else "")
        + f"; {total_audio / 3600:.3f} h of audio in {elapsed:.1f} s ({rate:.1f} files/s, "
        f"real-time factor {rtf:.4f}); {rows} rows"
        + (f" -> {output} (errors: {errors_path(output)})" if output else ""),
        highlight=False,
    )
    already = len(sink.done) - len(done) if sink is not None else 0
    if (not done and not already) or (strict and errors):
        raise typer.Exit(code=1)


def _progress_bar() -> Progress:
    """Files done of all, audio hours done, files per second, and the time left."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Files per second (rich's own speed estimate over the last minute)."""

        def render(self, task: Task) -> Text:
            return Text(f"{task.speed or 0:.1f} files/s")

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files, {task.fields[hours]:.2f}/{task.fields[total_h]:.2f} h audio,"),
        RateColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``export`` and ``predict`` to the root app."""
    app.command("export")(export)
    app.command("predict")(predict)
