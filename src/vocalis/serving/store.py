"""The prediction log: every served prediction, one row, in a SQL database (SQLAlchemy 2.0).

SQLite file by default (WAL journal, full sync), PostgreSQL by URL (``postgresql+psycopg://``). A row is
committed before the HTTP response leaves, so an acknowledged prediction survives a crash of the server.
The log feeds drift monitoring (input summary features, per-class probabilities) and audits (request id,
model name and version, client metadata).

Schema changes are Alembic migrations shipped in the package (``vocalis/serving/migrations``). Opening a
store runs ``upgrade head``, so a database made by an older vocalis is brought to the current schema (rows
kept) before the service writes to it; a database made before migrations existed (no ``alembic_version``
table) is first stamped at the baseline revision, whose schema it has. See docs/serving.md.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Integer, String, create_engine, event, func, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from vocalis.errors import ConfigError

log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    """Declarative base of the prediction log's tables."""


class PredictionRecord(Base):
    """One served prediction (one file of one request)."""

    __tablename__ = "predictions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    request_id: Mapped[str] = mapped_column(String(128), index=True)
    endpoint: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str | None] = mapped_column(String(512))
    model_name: Mapped[str | None] = mapped_column(String(256))  # revision 0002; NULL on older rows
    model_version: Mapped[str] = mapped_column(String(128))
    duration_s: Mapped[float] = mapped_column(Float)
    sample_rate: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer)
    rms_dbfs: Mapped[float] = mapped_column(Float)
    spectral_centroid_hz: Mapped[float] = mapped_column(Float)
    spectral_bandwidth_hz: Mapped[float] = mapped_column(Float)
    peak_frequency_hz: Mapped[float] = mapped_column(Float)
    zero_crossing_rate: Mapped[float] = mapped_column(Float)
    top_label: Mapped[str] = mapped_column(String(256), index=True)
    confidence: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[dict[str, float]] = mapped_column(JSON)
    n_windows: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    site: Mapped[str | None] = mapped_column(String(256))
    device: Mapped[str | None] = mapped_column(String(256))
    upload_path: Mapped[str | None] = mapped_column(String(1024))
    # revision 0003: projected mean embedding (vocalis.monitoring.embedding); NULL on older rows/models
    embedding: Mapped[list[float] | None] = mapped_column(JSON, nullable=True)


#: columns in export order
COLUMNS: tuple[str, ...] = tuple(c.name for c in PredictionRecord.__table__.columns)


@dataclass
class NewPrediction:
    """What the service knows about one prediction when it logs it."""

    request_id: str
    endpoint: str
    file_name: str | None
    model_version: str
    duration_s: float
    sample_rate: int
    channels: int
    summary: dict[str, float]
    top_label: str
    confidence: float
    probabilities: dict[str, float]
    n_windows: int
    latency_ms: float
    site: str | None = None
    device: str | None = None
    upload_path: str | None = None
    model_name: str | None = None
    embedding: list[float] | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers (exports, monitoring) run while the service writes; synchronous=FULL makes each
    # commit durable before the response is sent; busy_timeout rides out a concurrent writer
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(url: str) -> Engine:
    """Create an engine for ``url``; SQLite files get WAL mode and their parent folder is created."""
    try:
        if url.startswith("sqlite"):
            db_path = url.split(":///", 1)[-1] if ":///" in url else ""
            if db_path and db_path != ":memory:":
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"check_same_thread": False})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except Exception as exc:  # bad URL or missing driver: one clear error naming the setting
        raise ConfigError(f"VOCALIS_DATABASE_URL: cannot use '{_redact(url)}' ({exc})") from None


def _redact(url: str) -> str:
    """Hide a password in a database URL before it is logged or shown."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


#: the migration environment and its revisions, inside the installed package (not a repo-relative path)
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: the revision a database made by ``Base.metadata.create_all`` before migrations existed is at
BASELINE_REVISION = "0001"


def _alembic_config(connection: Any | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision of the prediction log's schema."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision a database is at (None: not under migration control)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade_schema(engine: Engine, *, attempts: int = 3) -> None:
    """Bring the database to the newest schema (``alembic upgrade head``); raises :class:`ConfigError`.

    Several processes may start on one database at once (``vocalis serve --workers N``): when one loses
    the race (the table or the revision row appears under it), the upgrade is tried again and finds the
    work done.
    """
    from alembic import command

    for attempt in range(1, attempts + 1):
        try:
            with engine.begin() as conn:
                tables = set(inspect(conn).get_table_names())
                cfg = _alembic_config(conn)
                if "predictions" in tables and "alembic_version" not in tables:
                    log.info("prediction log made before migrations: stamping it at %s", BASELINE_REVISION)
                    command.stamp(cfg, BASELINE_REVISION)
                command.upgrade(cfg, "head")
            return
        except Exception as exc:
            # a file that cannot be written (a read-only mount, file modes) will not become writable by
            # trying again: say so, in one line
            reason = _not_writable(sqlite_path(str(engine.url)))
            if reason is not None:
                raise LogUnavailableError(f"prediction log {reason} ({type(exc).__name__})") from None
            if attempt == attempts:
                raise ConfigError(
                    f"prediction log {_redact(str(engine.url))}: cannot migrate its schema ({exc})"
                ) from exc
            log.warning("prediction log migration attempt %d failed (%s); trying again", attempt, exc)
            time.sleep(0.2 * attempt)


class LogUnavailableError(ConfigError):
    """The prediction log cannot be written now (its file is gone, replaced or read-only)."""


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for other databases and in-memory SQLite)."""
    if not url.startswith("sqlite") or ":///" not in url:
        return None
    db_path = url.split(":///", 1)[1].split("?", 1)[0]
    return Path(db_path) if db_path and db_path != ":memory:" else None


def _not_writable(path: Path | None) -> str | None:
    """Why the SQLite file at ``path`` (or its folder, where SQLite writes its journal) cannot be written;
    None when it can or for a server database. ``os.access`` reports a read-only mount for root too."""
    if path is None:
        return None
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is not writable"
    if path.parent.is_dir() and not os.access(path.parent, os.W_OK):
        return f"{path} (or its folder) is not writable"
    return None


class PredictionStore:
    """Writes and reads the prediction log.

    A SQLite log is a file the service holds open: when it is deleted (or its folder is), SQLite keeps
    writing to the unlinked inode and every commit "succeeds" into nothing. So before each write the store
    checks that the path still names the file it opened and that it is writable; when not, the write fails
    (:class:`LogUnavailableError`, a 503 in the service) until the folder is back, when the log is opened
    again there.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self.engine = make_engine(url)
        upgrade_schema(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._lock = threading.Lock()
        self._identity = self._file_identity()
        log.info("prediction log at %s", _redact(url))

    def _file_identity(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def unwritable_reason(self) -> str | None:
        """Why the log cannot be written now, or None when it can (always None for a server database)."""
        if self.path is None:
            return None
        identity = self._file_identity()
        if identity is None:
            return f"{self.path} is gone (deleted while the service had it open)"
        if identity != self._identity:
            return f"{self.path} was replaced by another file while the service had it open"
        if not os.access(self.path, os.W_OK) or not os.access(self.path.parent, os.W_OK):
            return f"{self.path} (or its folder) is not writable"
        return None

    def ensure_writable(self) -> None:
        """Raise :class:`LogUnavailableError` unless the log can be written; reopen it when it can again.

        A log whose file is gone is opened anew once its folder exists and is writable again (the rows of
        the deleted file are gone with it; new ones are not written into a deleted file).
        """
        with self._lock:
            reason = self.unwritable_reason()
            if reason is None:
                return
            assert self.path is not None
            folder = self.path.parent
            if not (folder.is_dir() and os.access(folder, os.W_OK)) or self.path.exists():
                raise LogUnavailableError(reason)
            log.warning("prediction log: %s; opening a new log at %s", reason, self.path)
            self.engine.dispose()
            self.engine = make_engine(self.url)
            upgrade_schema(self.engine)
            self._sessions = sessionmaker(self.engine, expire_on_commit=False)
            self._identity = self._file_identity()

    def add(self, rows: Sequence[NewPrediction]) -> list[int]:
        """Insert ``rows`` in one transaction and commit; returns their ids. Raises on failure."""
        self.ensure_writable()
        records = [
            PredictionRecord(
                created_at=_aware(r.created_at),
                request_id=r.request_id,
                endpoint=r.endpoint,
                file_name=r.file_name,
                model_name=r.model_name,
                model_version=r.model_version,
                duration_s=r.duration_s,
                sample_rate=r.sample_rate,
                channels=r.channels,
                top_label=r.top_label,
                confidence=r.confidence,
                probabilities=r.probabilities,
                n_windows=r.n_windows,
                latency_ms=r.latency_ms,
                site=r.site,
                device=r.device,
                upload_path=r.upload_path,
                embedding=r.embedding,
                **r.summary,
            )
            for r in rows
        ]
        with self._sessions.begin() as session:
            session.add_all(records)
            session.flush()
            return [rec.id for rec in records]

    def count(self) -> int:
        """Number of logged predictions."""
        with Session(self.engine) as session:
            return int(session.scalar(select(func.count()).select_from(PredictionRecord)) or 0)

    def request_ids(self) -> set[str]:
        """Every request id in the log."""
        with Session(self.engine) as session:
            return set(session.scalars(select(PredictionRecord.request_id)).all())

    def rows(self, since: datetime | None = None, until: datetime | None = None) -> list[dict[str, Any]]:
        """Logged predictions as dicts (oldest first), optionally within ``[since, until)``."""
        stmt = select(PredictionRecord).order_by(PredictionRecord.id)
        if since is not None:
            stmt = stmt.where(PredictionRecord.created_at >= _aware(since))
        if until is not None:
            stmt = stmt.where(PredictionRecord.created_at < _aware(until))
        with Session(self.engine) as session:
            out = [{c: getattr(rec, c) for c in COLUMNS} for rec in session.scalars(stmt)]
        for row in out:  # SQLite keeps no zone: its values are the UTC times written by add()
            if isinstance(row.get("created_at"), datetime):
                row["created_at"] = _aware(row["created_at"])
        return out

    def ping(self) -> bool:
        """True when the database answers and can be written."""
        try:
            self.ensure_writable()
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except LogUnavailableError as exc:
            log.warning("prediction log unavailable: %s", exc)
            return False
        except Exception:
            log.exception("prediction log database does not answer")
            return False

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()


def _aware(t: datetime) -> datetime:
    """``t`` in UTC, timezone-aware (a naive time is taken as UTC). SQLite stores a time without its
    offset, so every time is converted to UTC before it is written or compared."""
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


#: a CSV cell starting with one of these is run as a formula by spreadsheets (CSV injection)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_safe(value: Any) -> Any:
    """A text cell a spreadsheet will not run: a leading ``'`` before a formula character."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_STARTS) else value


def export_log(store: PredictionStore, out: Path, since: datetime | None = None) -> int:
    """Write the prediction log (from ``since``) to ``out`` (``.parquet`` or ``.csv``); returns the row count.

    The per-class probabilities become a JSON string column so both formats hold the same table.
    ``created_at`` is timezone-aware UTC in both; ``since`` may carry any offset. In CSV, a text cell
    that starts with ``=``, ``+``, ``-``, ``@`` (a file name a client chose, say) gets a leading ``'`` so
    a spreadsheet shows it instead of running it. A path that cannot be written raises
    :class:`ConfigError`.
    """
    import json

    import pandas as pd

    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ConfigError(f"{out}: the export format is chosen by the suffix, .parquet or .csv")
    rows = store.rows(since=since)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    frame["probabilities"] = [json.dumps(p, sort_keys=True) for p in frame["probabilities"]]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".parquet":
            frame.to_parquet(out, index=False)
        else:
            for col in frame.select_dtypes(include="object").columns:
                frame[col] = frame[col].map(_csv_safe)
            frame.to_csv(out, index=False)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write the export ({exc.strerror or exc})") from None
    return len(frame)
