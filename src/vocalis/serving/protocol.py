"""The HTTP protocol ``vocalis serve`` runs: uvicorn's httptools protocol with a deadline on request headers.

uvicorn closes a keep-alive connection that stays idle after a response (``timeout_keep_alive``), but a
connection that never finishes its first request line and headers has no deadline at all: a client that
opens sockets and sends nothing (or a byte now and then) holds them, and their file descriptors, forever.
This protocol arms a timer when a connection opens and whenever a new request begins, and closes the
connection when the headers are not complete within ``VOCALIS_HEADER_TIMEOUT_S``. The body has its own
deadline in :class:`vocalis.serving.middleware.UploadGuardMiddleware`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)


@functools.cache
def header_timeout_s() -> float:
    """``VOCALIS_HEADER_TIMEOUT_S`` (read once per process: every connection uses it)."""
    from vocalis.serving.settings import Settings

    return Settings().header_timeout_s


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that closes connections whose request headers do not arrive in time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(header_timeout_s(), self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            log.info(
                "closed a connection from %s: no complete request headers in %.0f s",
                self.client,
                header_timeout_s(),
            )
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header deadline: a new connection must send a request's headers in time."""
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the timer with the connection."""
        self._cancel_header_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        """A request (the next one on a keep-alive connection, too) starts: its headers have a deadline."""
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        """The headers are in: the body's deadline is the middleware's business."""
        self._cancel_header_timer()
        super().on_headers_complete()
