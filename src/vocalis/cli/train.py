"""CLI commands of the train stage: ``vocalis train``, ``vocalis evaluate``, ``vocalis sweep``.

Thin wrappers: compose the Hydra config, call :mod:`vocalis.training` / :mod:`vocalis.evaluation`, render
with rich. torch, lightning and hydra are imported inside the command bodies only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from vocalis.cli.progress import stage_progress

if TYPE_CHECKING:
    from vocalis.training.sweep import SweepResult

console = Console()

_EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}
_OVERRIDES_HELP = (
    "Hydra overrides, e.g. experiment=demo model=resnet18 trainer.max_epochs=5 logger=[mlflow,csv] "
    "run_dir=runs/x resume=RUN_DIR trainer=ddp profiler=simple"
)


def _quiet_console_logging() -> None:
    """Keep INFO messages (which go to RUN_DIR/train.log) off the console unless --verbose was given."""
    root = logging.getLogger()
    for h in root.handlers:
        if h.level == logging.NOTSET:
            h.setLevel(root.level)


def metrics_table(metrics: dict[str, Any], title: str) -> Table:
    """Overall metrics and the per-class precision/recall/F1/support as one rich table."""
    table = Table(title=title)
    for col in ("class", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, v in metrics["per_class"].items():
        table.add_row(
            name, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", str(v["support"])
        )
    table.add_section()
    auroc = metrics.get("macro_auroc")
    table.add_row("[bold]accuracy", "", "", f"[bold]{metrics['accuracy']:.4f}", str(metrics["n"]))
    table.add_row("[bold]macro-F1", "", "", f"[bold]{metrics['macro_f1']:.4f}", "")
    table.add_row("balanced accuracy", "", "", f"{metrics['balanced_accuracy']:.4f}", "")
    table.add_row("macro AUROC", "", "", "n/a" if auroc is None else f"{auroc:.4f}", "")
    if metrics.get("clip_accuracy") is not None:
        table.add_row("clip accuracy", "", "", f"{metrics['clip_accuracy']:.4f}", "")
    return table


def train_command(
    overrides: list[str] = typer.Argument(None, help=_OVERRIDES_HELP),
) -> None:
    """Train a model: prepare the feature cache (no-op when current), fit, test the best checkpoint.

    Writes RUN_DIR (default runs/<name>-<time>-<id>) with config.yaml, checkpoints/{best,last}.ckpt,
    metrics.json, classes.json, run.json and train.log, and tracks the run (MLflow by default:
    `mlflow ui --backend-store-uri sqlite:///mlflow.db`). Continue a killed run with resume=RUN_DIR.
    """
    from vocalis.training.config import check_numbers, compose_config, resolve_resume

    _quiet_console_logging()
    cfg = resolve_resume(compose_config(list(overrides or [])))
    if cfg.get("head") is not None:  # a transfer experiment: a head on backbone embeddings
        from vocalis.cli.transfer import train_transfer_command

        train_transfer_command(cfg, metrics_table)  # imports neither Lightning nor, for BirdNET, torch
        return
    # Lightning and torch: only a network's training needs them
    from vocalis.training.rundir import is_ddp_child
    from vocalis.training.sweep import run_sweep
    from vocalis.training.train import prepare_data, train

    check_numbers(cfg)  # before the data is prepared: a typo costs nothing
    if cfg.get("hparams_search") and not cfg.get("resume"):
        # `vocalis train hparams_search=optuna` is the same as `vocalis sweep`
        _print_sweep(run_sweep(cfg), str(cfg.hparams_search.metric))
        return
    bar, progress = stage_progress(console, "prepare: ")
    with bar:
        cache = prepare_data(cfg, progress)
    n_skipped = int(getattr(cache, "meta", {}).get("n_skipped", 0) or 0)
    if n_skipped:  # training goes on without them, but the user must know (and where to look)
        console.print(
            f"[yellow]skipped {n_skipped} file(s)[/] that could not be used; "
            f"listed with reasons in {cache.dir / 'skipped.csv'}",
            highlight=False,
        )
    result = train(cfg, cache=cache)
    if result is None or is_ddp_child():
        return
    console.print(
        metrics_table(result.metrics, f"test metrics of the best checkpoint ({result.best_checkpoint.name})")
    )
    console.print(
        f"epochs {result.epochs}  best {cfg.callbacks.checkpoint.monitor} "
        f"{'n/a' if result.best_val is None else f'{result.best_val:.4f}'}  time {result.seconds:.1f} s"
    )
    if result.stopped_by_max_time:
        console.print(
            f"[yellow]trainer.max_time={cfg.trainer.max_time} stopped training after {result.epochs} of "
            f"{cfg.trainer.max_epochs} epochs[/]: the result depends on how busy the machine was "
            "(recorded in run.json)"
        )
    console.print(f"[green]run directory[/] {result.run_dir}")


def evaluate_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by `vocalis train`."),
    checkpoint: str = typer.Option("best", "--checkpoint", "-c", help="best, last, or a checkpoint path."),
    split: str = typer.Option("test", "--split", "-s", help="test, val or train."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Where to write the report (default RUN_DIR/evaluation/<ckpt>-<split>)."
    ),
    shift: str | None = typer.Option(
        None, "--shift", help="Measure accuracy under a shift: noise, gain, lowpass, resample or timeshift."
    ),
    strength: list[float] | None = typer.Option(
        None, "--strength", help="Shift strength (repeatable; default: the study's strengths, see docs)."
    ),
) -> None:
    """Evaluate a run's checkpoint on a split of its feature cache.

    Prints accuracy, macro-F1, balanced accuracy, macro AUROC and per-class precision/recall/F1/support,
    and writes metrics.json, confusion_matrix.png (row-normalised), per_class.csv and misclassified.csv
    (path, start/end, true label, top-3 predictions).

    With --shift, scores each recording of the split unshifted and under the shift at each --strength
    (noise: SNR dB, gain: dB, lowpass: cutoff Hz, resample: rate factor, timeshift: seconds of leading
    silence) and prints the accuracy table; -o then names a JSON file for it (docs/robustness.md).
    """
    if shift is not None:
        _evaluate_shift(run_dir, checkpoint, split, output, shift, strength)
        return
    from vocalis.evaluation.evaluate import evaluate_run

    with console.status(f"evaluating {run_dir} ({checkpoint}, {split})"):
        result = evaluate_run(run_dir, checkpoint=checkpoint, split=split, output_dir=output)
    console.print(metrics_table(result.metrics, f"{split} metrics of {result.checkpoint}"))
    console.print(f"[green]report[/] {result.output_dir}")


def _evaluate_shift(
    run_dir: Path, checkpoint: str, split: str, output: Path | None, shift: str, strength: list[float] | None
) -> None:
    import json

    from vocalis.evaluation.shifts import STRENGTH_UNITS, evaluate_shifts

    with console.status(f"evaluating {run_dir} under {shift} shifts ({split})"):
        rows = evaluate_shifts(run_dir, shift, strength, checkpoint=checkpoint, split=split)
    table = Table(title=f"{split} accuracy of {run_dir} under {shift}")
    table.add_column(f"strength ({STRENGTH_UNITS.get(shift, '')})", justify="right")
    table.add_column("accuracy", justify="right")
    table.add_column("recordings", justify="right")
    for r in rows:
        table.add_row("unshifted" if r["strength"] is None else f"{r['strength']:g}", f"{r['accuracy']:.4f}",
                      str(r["n"]))  # fmt: skip
    console.print(table)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(rows, indent=2) + "\n")
        console.print(f"[green]results[/] {output}")


def sweep_command(
    overrides: list[str] = typer.Argument(None, help=_OVERRIDES_HELP + " hparams_search.n_trials=20"),
) -> None:
    """Search hyper-parameters with Optuna (hparams_search=optuna), pruning on the validation metric.

    Every trial is a full training run (its own run directory and MLflow run); the best trial's config
    is saved as SWEEP_DIR/best_config.yaml.
    """
    from vocalis.training.config import compose_config
    from vocalis.training.sweep import run_sweep

    _quiet_console_logging()
    args = list(overrides or [])
    if not any(a.startswith("hparams_search=") for a in args):
        args.append("hparams_search=optuna")
    cfg = compose_config(args)
    _print_sweep(run_sweep(cfg), str(cfg.hparams_search.metric))


def _print_sweep(result: SweepResult, metric: str) -> None:
    """Render a finished study: one row per trial, then the best trial and its config."""
    table = Table(title=f"sweep {result.study_name}: {metric}")
    table.add_column("trial", justify="right")
    table.add_column("state")
    table.add_column("value", justify="right")
    table.add_column("params")
    for t in result.trials:
        value = "" if t["value"] is None else f"{t['value']:.4f}"
        table.add_row(
            str(t["number"]), t["state"], value, ", ".join(f"{k}={v}" for k, v in t["params"].items())
        )
    console.print(table)
    console.print(f"best trial {result.best_trial} value {result.best_value:.4f}")
    console.print(f"[green]best config[/] {result.best_config}")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""
    app.command("train", context_settings=_EXTRA)(train_command)
    app.command("evaluate")(evaluate_command)
    app.command("sweep", context_settings=_EXTRA)(sweep_command)
