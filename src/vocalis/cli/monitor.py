"""CLI commands of monitoring: ``vocalis monitor drift`` and ``vocalis monitor reference``.

Evidently and pandas are imported inside the command bodies, so ``vocalis --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console()

monitor_app = typer.Typer(
    help="Production monitoring: drift of the served traffic against the artifact's reference.",
    no_args_is_help=True,
)


@monitor_app.command("drift")
def drift(
    model: Path | None = typer.Option(
        None, "--model", "-m", help="Model artifact (default: $VOCALIS_MODEL_DIR or artifacts/demo)."
    ),
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        help="SQLAlchemy URL of the prediction log (default: $VOCALIS_DATABASE_URL or sqlite:///predictions.db).",
    ),
    since: str | None = typer.Option(None, "--since", help="Predictions of the last 7d, 12h, 30m, ..."),
    last: int | None = typer.Option(None, "--last", help="The last N logged predictions."),
    out: Path = typer.Option(Path("drift-report.html"), "--out", "-o", help="Evidently HTML report."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the JSON summary here."),
    model_version: str | None = typer.Option(
        None, "--model-version", help="Only predictions logged by this model version."
    ),
    min_rows: int = typer.Option(30, "--min-rows", min=2, help="Refuse with fewer predictions than this."),
    threshold: float = typer.Option(0.05, "--threshold", help="p-value under which a column has drifted."),
    drift_share: float = typer.Option(
        0.5, "--drift-share", help="Share of drifted columns from which drift is detected."
    ),
    fail_on_drift: bool = typer.Option(False, "--fail-on-drift", help="Exit with status 2 on drift."),
) -> None:
    """Compare logged predictions with the reference stored in the model artifact (Evidently).

    Data drift over the audio summary features, prediction drift over the class mix and the confidence.
    Writes the HTML report and, with --json, the summary (drift_detected, drift_share, every test).
    """
    from vocalis.monitoring.drift import drift_for_artifact, make_window
    from vocalis.serving.settings import Settings
    from vocalis.serving.store import PredictionStore

    settings = Settings()
    artifact = model or settings.model_dir
    window = make_window(since, last)
    store = PredictionStore(database_url or settings.database_url)
    try:
        result = drift_for_artifact(
            artifact,
            store,
            window,
            model_version=model_version,
            html_path=out,
            min_rows=min_rows,
            p_threshold=threshold,
            drift_share=drift_share,
        )
    finally:
        store.close()
    summary = result.to_dict()
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(summary, indent=2) + "\n")

    table = Table(title=f"drift: {result.n_current} logged vs {result.n_reference} reference recordings")
    for col in ("column", "kind", "test", "statistic", "p-value", "drifted"):
        table.add_column(col)
    for t in result.tests:
        table.add_row(
            t.column,
            t.kind,
            t.test,
            f"{t.statistic:.3f}",
            f"{t.p_value:.2e}",
            "[bold red]yes[/]" if t.drifted else "no",
        )
    console.print(table)
    verdict = "[bold red]DRIFT DETECTED[/]" if result.drift_detected else "[green]no drift[/]"
    console.print(
        f"{verdict}: drift share {result.drift_share:.2f} (threshold {drift_share}); report: {out}"
        + (f", summary: {json_out}" if json_out else ""),
        highlight=False,
        soft_wrap=True,
    )
    if fail_on_drift and result.drift_detected:
        raise typer.Exit(2)


@monitor_app.command("reference")
def reference(
    source: Path = typer.Argument(..., help="Run directory (run.json) or feature-cache directory."),
    artifact: Path = typer.Argument(..., help="Model artifact to store the reference in."),
    split: str = typer.Option("train", "--split", help="Split of the cache manifest to describe."),
    max_clips: int = typer.Option(1000, "--max-clips", min=1, help="Recordings at most (random draw)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the draw."),
) -> None:
    """(Re)compute the drift reference of an artifact, e.g. one exported before references existed."""
    from vocalis.monitoring.reference import build_reference, load_reference

    path = build_reference(source, artifact, split=split, max_clips=max_clips, seed=seed)
    ref = load_reference(artifact)
    console.print(f"wrote {path}: {len(ref)} {split} recording(s)", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the monitoring commands to the root app."""
    app.add_typer(monitor_app, name="monitor")
