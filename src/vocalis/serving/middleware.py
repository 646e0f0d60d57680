"""Pure ASGI middleware: request ids + metrics around every request, and the upload size limit.

Pure ASGI (not ``BaseHTTPMiddleware``) so the request body streams through untouched: the size limit
counts bytes as they arrive and refuses the request the moment it passes the limit, without ever holding
the whole body in memory.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vocalis.serving.metrics import ServiceMetrics
from vocalis.serving.request_context import new_request_id, request_id_var

log = logging.getLogger(__name__)


class BodyTooLarge(HTTPException):
    """The request body passed the size limit while streaming (an HTTPException so FastAPI re-raises it)."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body is larger than the limit of {limit} bytes")
        self.limit = limit


def _json_response(status: int, body: dict[str, Any], request_id: str) -> tuple[Message, Message]:
    payload = json.dumps(body).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"x-request-id", request_id.encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": payload, "more_body": False}


class BodySizeLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413: up front by Content-Length, else while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int, metrics: ServiceMetrics | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap ``receive`` to count body bytes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        request_id = request_id_var.get()
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    log.info("refused a %d-byte body (limit %d) before reading it", declared, limit)
                    if self.metrics is not None:
                        self.metrics.errors.labels("payload_too_large").inc()
                    for message in _json_response(
                        413,
                        {
                            "error": "payload_too_large",
                            "detail": f"request body of {declared} bytes is larger than the limit of "
                            f"{limit} bytes",
                            "request_id": request_id,
                        },
                        request_id,
                    ):
                        await send(message)
                    return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    log.info("refused a streamed body after %d bytes (limit %d)", received, limit)
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:
            # raised outside the route's exception handlers (e.g. while a dependency read the body)
            if started:
                raise
            if self.metrics is not None:
                self.metrics.errors.labels("payload_too_large").inc()
            for message in _json_response(
                413,
                {"error": "payload_too_large", "detail": exc.detail, "request_id": request_id},
                request_id,
            ):
                await send(message)


class RequestContextMiddleware:
    """Assign the request id, echo it in ``X-Request-ID``, and record request metrics."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request inside its id's context."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client_id = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                client_id = value.decode("latin-1")
                break
        request_id = new_request_id(client_id)
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        t0 = time.perf_counter()
        self.metrics.in_flight.inc()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - t0
            self.metrics.in_flight.dec()
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(endpoint, method, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(elapsed)
            if status >= 400:
                log.info("%s %s -> %d in %.1f ms", method, scope.get("path"), status, elapsed * 1e3)
            request_id_var.reset(token)
