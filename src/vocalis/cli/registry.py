"""CLI commands of the registry stage: ``vocalis registry register|list|show|promote|link-wandb``.

MLflow is imported inside the command bodies (it comes with the ``train`` extra).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

registry_app = typer.Typer(
    help="The MLflow model registry: register artifacts, list versions, promote through the gate.",
    no_args_is_help=True,
)

TRACKING_HELP = "MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)."


@registry_app.command("register")
def register_cmd(
    artifact_dir: Path = typer.Argument(..., help="Exported artifact directory (model.onnx + model.json)."),
    name: str = typer.Option("vocalis", "--name", "-n", help="Registered model name."),
    run: Path | None = typer.Option(
        None, "--run", help="Training run directory to link (default: the card's)."
    ),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_HELP),
) -> None:
    """Register an artifact as a new model version (pyfunc flavour, card facts as tags, run linked)."""
    from vocalis.registry.registry import Registry

    info = Registry(tracking_uri).register(artifact_dir, name=name, run_dir=run)
    console.print(
        f"registered [bold]{escape(info.name)}[/] version [bold]{info.version}[/] "
        f"(run {info.run_id}); next: vocalis registry promote {info.name} {info.version} --to staging",
        highlight=False,
        soft_wrap=True,
    )


@registry_app.command("list")
def list_cmd(
    name: str | None = typer.Option(None, "--name", "-n", help="Only this model."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_HELP),
) -> None:
    """Versions, their aliases and key metrics."""
    from vocalis.registry.registry import TAG, Registry

    versions = Registry(tracking_uri).versions(name)
    if as_json:
        typer.echo(json.dumps([v.to_dict() for v in versions], indent=2))
        return
    table = Table(title="registered model versions")
    for col in ("name", "version", "aliases", "accuracy", "macro-F1", "gate", "card", "created"):
        table.add_column(col)
    from datetime import UTC, datetime

    for v in versions:
        m = v.metrics
        table.add_row(
            v.name,
            v.version,
            ", ".join(v.aliases),
            f"{m['accuracy']:.3f}" if "accuracy" in m else "",
            f"{m['macro_f1']:.3f}" if "macro_f1" in m else "",
            v.tags.get(TAG + "gate.result", ""),
            v.tags.get(TAG + "card_version", ""),
            datetime.fromtimestamp(v.created_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)


@registry_app.command("show")
def show_cmd(
    ref: str = typer.Argument(..., help="NAME@ALIAS, NAME/VERSION or models:/NAME@ALIAS."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_HELP),
) -> None:
    """Everything the registry holds about one version, as JSON."""
    from vocalis.registry.registry import Registry

    info = Registry(tracking_uri).get(ref)
    typer.echo(json.dumps(info.to_dict() | {"description": info.description}, indent=2))


@registry_app.command("promote")
def promote_cmd(
    name: str = typer.Argument(..., help="Registered model name."),
    version: str = typer.Argument(..., help="The version to promote."),
    to: str = typer.Option(..., "--to", help="staging or production (production runs the gate)."),
    force: bool = typer.Option(False, "--force", help="Promote even when checks fail (needs --reason)."),
    reason: str | None = typer.Option(None, "--reason", help="Why a forced promotion is right."),
    eval_set: Path | None = typer.Option(
        None, "--eval-set", help="Frozen evaluation set: a feature cache directory or a CSV manifest."
    ),
    eval_split: str | None = typer.Option(None, "--eval-split", help="Split of the evaluation set (test)."),
    gate_config: Path | None = typer.Option(None, "--gate-config", help="YAML/JSON file of gate thresholds."),
    tolerance: float | None = typer.Option(None, "--tolerance", help="Allowed drop vs production, points."),
    min_accuracy: float | None = typer.Option(None, "--min-accuracy", help="Accuracy floor (0-1)."),
    min_macro_f1: float | None = typer.Option(None, "--min-macro-f1", help="Macro-F1 floor (0-1)."),
    min_class_recall: float | None = typer.Option(None, "--min-class-recall", help="Per-class recall floor."),
    min_windows_per_s: float | None = typer.Option(None, "--min-windows-per-s", help="Speed budget."),
    max_slowdown: float | None = typer.Option(None, "--max-slowdown", help="Allowed speed loss (0-1)."),
    report_dir: Path = typer.Option(Path("registry-reports"), "--report-dir", help="Where the report goes."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_HELP),
) -> None:
    """Move an alias; production only when every gate check passes (one line per failed check)."""
    from vocalis.errors import ConfigError
    from vocalis.registry.gate import GateConfig
    from vocalis.registry.promotion import promote

    if force and not (reason and reason.strip()):
        raise ConfigError("--force needs --reason TEXT: a forced promotion records who and why")
    config = GateConfig.load(
        gate_config,
        eval_set=str(eval_set) if eval_set else None,
        eval_split=eval_split,
        tolerance=tolerance / 100 if tolerance is not None else None,
        min_accuracy=min_accuracy,
        min_macro_f1=min_macro_f1,
        min_class_recall=min_class_recall,
        min_windows_per_s=min_windows_per_s,
        max_slowdown=max_slowdown,
    )
    result = promote(
        name,
        version,
        to,
        tracking_uri=tracking_uri,
        force=force,
        reason=reason,
        config=config,
        report_dir=report_dir,
    )
    if result.gate is not None:
        for check in result.gate.checks:
            mark = "[green]pass[/]" if check.passed else "[bold red]FAIL[/]"
            console.print(f"  {mark} {check.name}: {escape(check.detail)}", highlight=False, soft_wrap=True)
        console.print(f"report: {result.report_md} and {result.report_json}", highlight=False, soft_wrap=True)
    if not result.promoted:
        for check in result.gate.failed if result.gate else []:
            err_console.print(
                f"refused: {check.name}: {escape(check.detail)}", highlight=False, soft_wrap=True
            )
        raise typer.Exit(1)
    forced = " (forced: checks failed)" if result.forced else ""
    moved = f" (was version {result.previous})" if result.previous else ""
    console.print(f"{name}@{to} -> version {result.version}{moved}{forced}", highlight=False)


@registry_app.command("link-wandb")
def link_wandb_cmd(
    source: str = typer.Argument(
        ..., help="W&B artifact (entity/project/name:version) or an artifact directory."
    ),
    collection: str = typer.Option(..., "--collection", "-c", help="W&B registry collection."),
    registry: str = typer.Option("model", "--registry", help="W&B registry (wandb-registry-<this>)."),
    project: str = typer.Option("vocalis", "--project", help="W&B project for a local directory's upload."),
    entity: str | None = typer.Option(None, "--entity", help="W&B entity (team or user)."),
    alias: list[str] = typer.Option([], "--alias", help="Alias(es) to give the linked version."),
) -> None:
    """Link a model to a W&B registry collection (online only; offline it says what it needs)."""
    from vocalis.registry.wandb_link import link_wandb

    path = link_wandb(
        source, collection, registry=registry, project=project, entity=entity, aliases=alias or None
    )
    console.print(f"linked {escape(source)} to {escape(path)}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``registry`` group to the root app."""
    app.add_typer(registry_app, name="registry")
