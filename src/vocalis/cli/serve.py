"""CLI commands of the serving stage: ``vocalis serve`` and ``vocalis log export``.

Nothing heavy is imported at module level (no torch ever: the service does not need it), and uvicorn and
the app only inside the command body, so ``vocalis --help`` stays fast.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from vocalis.serving.settings import Settings

console = Console(stderr=True)  # messages; what a command writes goes to its files

log_app = typer.Typer(help="The prediction log: export what the service has served.", no_args_is_help=True)


def _parse_when(value: str | None) -> datetime | None:
    """ISO date/time (UTC when no zone is given) or a relative '7d' / '12h' / '30m'."""
    from vocalis.errors import ConfigError

    if value is None:
        return None
    units = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
    if value[-1:] in units and value[:-1].replace(".", "", 1).isdigit():
        from datetime import timedelta

        return datetime.now(UTC) - timedelta(seconds=float(value[:-1]) * units[value[-1]])
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"--since: '{value}' is neither an ISO date/time nor a duration like 7d, 12h"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def serve(
    model: Path | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Model artifact directory or registry URI models:/NAME@ALIAS "
        "(default: $VOCALIS_MODEL_DIR or artifacts/demo).",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0 for all)."),
    port: int = typer.Option(8000, "--port", "-p", help="TCP port."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Worker processes (each loads the model)."),
    log_level: str | None = typer.Option(
        None, "--log-level", help="debug, info, warning or error (default: $VOCALIS_LOG_LEVEL or info)."
    ),
) -> None:
    """Serve the model over HTTP: /v1/predict, /v1/predict/batch, /v1/model, /metrics, a web page at /.

    Every other setting comes from VOCALIS_* environment variables (database URL, limits, admin token,
    CORS origins, upload dir); see docs/serving.md.
    """
    import uvicorn

    from vocalis.errors import ArtifactError
    from vocalis.serving.protocol import HeaderTimeoutProtocol
    from vocalis.serving.request_context import configure_logging
    from vocalis.serving.settings import load_settings

    if model is not None:
        # the workers read their settings from the environment: pass the choice on that way
        os.environ["VOCALIS_MODEL_DIR"] = str(model)
    if os.environ.get("VOCALIS_MODEL_DIR", "").startswith("models:/"):
        # a registry URI: resolve the alias once here, serve the downloaded artifact; the URI and the
        # version stay in the environment for a reload to re-resolve (vocalis.registry.resolve)
        from vocalis.registry.resolve import resolve_model

        resolved = resolve_model(os.environ["VOCALIS_MODEL_DIR"])
        os.environ["VOCALIS_MODEL_URI"] = resolved.uri
        os.environ["VOCALIS_MODEL_VERSION"] = resolved.label
        os.environ["VOCALIS_MODEL_DIR"] = str(resolved.directory)
    if log_level is not None:  # the flag wins over the environment, as every flag does
        os.environ["VOCALIS_LOG_LEVEL"] = log_level.upper()
    if workers > 1 and not os.environ.get("VOCALIS_INFERENCE_CONCURRENCY"):
        # the cores are shared by the workers: each runs cores / workers predictions at a time
        from vocalis.inference import default_threads

        os.environ["VOCALIS_INFERENCE_CONCURRENCY"] = str(max(1, default_threads() // workers))
    settings = load_settings()
    if not (settings.model_dir / "model.onnx").is_file():
        raise ArtifactError(
            f"{settings.model_dir}: no model.onnx there; export a model (vocalis export) or pass --model"
        )
    _preflight(settings)
    configure_logging(settings.log_level)
    console.print(
        f"serving [bold]{settings.model_dir}[/] on http://{host}:{port} "
        f"({workers} worker{'s' if workers > 1 else ''}); web page at /, API docs at /docs",
        highlight=False,
        soft_wrap=True,
    )
    uvicorn.run(
        "vocalis.serving.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        log_config=None,  # keep our handler: every line carries the request id
        access_log=False,
        http=HeaderTimeoutProtocol,  # closes connections whose request headers do not come in time
        h11_max_incomplete_event_size=64 * 1024,
    )


def _preflight(settings: Settings) -> None:
    """Fail before listening, with one line (a :class:`VocalisError`), on what would fail every request:
    a model that does not load, a prediction log that cannot be opened, migrated or written.

    Inside uvicorn the same failures surface as a lifespan traceback and exit 3.
    """
    from vocalis.serving.prediction import load_predictor
    from vocalis.serving.store import PredictionStore

    load_predictor(settings)  # ArtifactError: missing, corrupt or inconsistent artifact
    store = PredictionStore(settings.database_url)  # ConfigError: bad URL, no driver, cannot migrate
    try:
        store.ensure_writable()  # LogUnavailableError (a ConfigError): e.g. a read-only mount
    finally:
        store.close()


@log_app.command("export")
def export(
    output: Path = typer.Option(..., "--output", "-o", help="Output file: .parquet or .csv."),
    since: str | None = typer.Option(
        None,
        "--since",
        help="ISO date/time (UTC unless it carries an offset, e.g. +01:00) or a duration: 7d, 12h, 30m.",
    ),
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        help="SQLAlchemy URL (default: $VOCALIS_DATABASE_URL or sqlite:///predictions.db).",
    ),
) -> None:
    """Export the prediction log to Parquet or CSV (for drift monitoring and audits); times in UTC."""
    from sqlalchemy.exc import SQLAlchemyError

    from vocalis.errors import ConfigError
    from vocalis.serving.settings import Settings
    from vocalis.serving.store import PredictionStore, export_log

    url = database_url or Settings().database_url
    when = _parse_when(since)
    if url.startswith("sqlite") and ":///" in url:
        # opening a missing SQLite file would create an empty database and export nothing: a typo
        db = url.split(":///", 1)[1].split("?", 1)[0]
        if db and db != ":memory:" and not Path(db).is_file():
            raise ConfigError(f"{db}: no prediction log database there (check --database-url)")
    store = PredictionStore(url)  # a bad URL, a file that is no database: ConfigError
    try:
        n = export_log(store, output, since=when)
    except SQLAlchemyError as exc:  # the database went away or answers with an error mid-export
        first = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise ConfigError(f"prediction log: cannot read it ({first})") from None
    finally:
        store.close()
    console.print(f"wrote {n} prediction(s) to {output}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""
    app.command("serve")(serve)
    app.add_typer(log_app, name="log")
