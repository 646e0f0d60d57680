"""Request ids: one per request, carried in a contextvar so every log line of the request names it.

The id comes from the client's ``X-Request-ID`` header when it is a sane token, else a fresh uuid4; the
response echoes it. A log record factory stamps ``record.request_id`` on every record (also those of
uvicorn and third-party libraries), so a format string can always use ``%(request_id)s``.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("vocalis_request_id", default="-")

#: accepted client ids: short, printable, no spaces (they go into logs and the database)
_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

LOG_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"


def new_request_id(client_value: str | None) -> str:
    """The client's id when it is valid, else a fresh one."""
    if client_value and _VALID_ID.match(client_value):
        return client_value
    return uuid.uuid4().hex


_installed = False


def install_record_factory() -> None:
    """Make every LogRecord carry the current request id (idempotent)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)  # type: ignore[arg-type]
        record.request_id = request_id_var.get()
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


def configure_logging(level: str = "INFO") -> None:
    """Log to stderr with the request id in every line (used by ``vocalis serve``)."""
    install_record_factory()
    root = logging.getLogger()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # alembic announces each of its plugins at INFO on every start; its upgrade lines stay
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
