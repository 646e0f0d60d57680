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

import anyio
from starlette.exceptions import HTTPException
from starlette.routing import Match
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


class BodyTimeout(HTTPException):
    """The request body did not arrive within its deadline (an HTTPException so FastAPI re-raises it)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            status_code=408,
            detail=f"the request body did not arrive within {seconds:g} s (VOCALIS_BODY_TIMEOUT_S)",
            headers={"Connection": "close"},  # the rest of the body is not read: the connection ends
        )


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"", b"0")):
            return True
    return False


class UploadGuardMiddleware:
    """Bound request bodies in time and in number.

    A body must arrive whole within ``body_timeout_s`` of the request's start (408 ``request_timeout`` and
    the connection closes); at most ``max_uploads`` requests with a body are served at once, others get
    503 ``too_many_uploads`` at once (with ``Retry-After``) instead of queueing their bodies in memory.
    Requests without a body (``/health``, ``/ready``, ``/metrics``) are never counted nor timed.
    """

    def __init__(
        self, app: ASGIApp, body_timeout_s: float, max_uploads: int, metrics: ServiceMetrics | None = None
    ) -> None:
        self.app = app
        self.body_timeout_s = body_timeout_s
        self.max_uploads = max_uploads
        self.metrics = metrics
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count the upload and put a deadline on ``receive`` until the body is complete."""
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        request_id = request_id_var.get()
        if self.active >= self.max_uploads:
            log.warning("refused an upload: %d already in progress", self.active)
            if self.metrics is not None:
                self.metrics.errors.labels("too_many_uploads").inc()
            start, body = _json_response(
                503,
                {
                    "error": "too_many_uploads",
                    "detail": f"{self.active} uploads are in progress, the limit is {self.max_uploads} "
                    "(VOCALIS_MAX_CONCURRENT_UPLOADS); try again shortly",
                    "request_id": request_id,
                },
                request_id,
            )
            start["headers"] = [*start["headers"], (b"retry-after", b"1"), (b"connection", b"close")]
            await send(start)
            await send(body)
            return
        deadline = anyio.current_time() + self.body_timeout_s
        body_done = False
        started = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:  # after the body only a disconnect can come: no deadline on waiting for it
                return await receive()
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())) as scope_:
                message = await receive()
            if scope_.cancelled_caught:
                log.info("request body not complete after %.0f s: refused", self.body_timeout_s)
                raise BodyTimeout(self.body_timeout_s)
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        self.active += 1
        try:
            await self.app(scope, timed_receive, tracking_send)
        except BodyTimeout as exc:
            if started:
                raise
            if self.metrics is not None:
                self.metrics.errors.labels("request_timeout").inc()
            start, body = _json_response(
                408, {"error": "request_timeout", "detail": exc.detail, "request_id": request_id}, request_id
            )
            start["headers"] = [*start["headers"], (b"connection", b"close")]
            await send(start)
            await send(body)
        finally:
            self.active -= 1


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

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send_with_id(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            # answered here, inside the request's context, so the 500 names the request id (in the body
            # and the X-Request-ID header) like every other error; the traceback goes to the log
            log.exception("unexpected error")
            if started:
                raise
            self.metrics.errors.labels("internal_error").inc()
            for message in _json_response(
                500,
                {
                    "error": "internal_error",
                    "detail": "the server failed; see its log for this request id",
                    "request_id": request_id,
                },
                request_id,
            ):
                await send_with_id(message)
        finally:
            elapsed = time.perf_counter() - t0
            self.metrics.in_flight.dec()
            endpoint = _endpoint_label(scope)
            method = scope.get("method", "")
            self.metrics.requests.labels(endpoint, method, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(elapsed)
            if status >= 400:
                log.info("%s %s -> %d in %.1f ms", method, scope.get("path"), status, elapsed * 1e3)
            request_id_var.reset(token)


def _endpoint_label(scope: Scope) -> str:
    """The route template a request matched, for the metrics' ``endpoint`` label.

    FastAPI's own routes put themselves in ``scope["route"]``; the docs, the OpenAPI schema and mounted
    static files are plain Starlette routes that do not, so they are matched here again (only for those).
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return str(path)
    app = scope.get("app")
    router = getattr(app, "router", None)
    # routing rewrote root_path for a mount: match the request as it came in
    original = {**scope, "root_path": scope.get("app_root_path", "")}
    for candidate in getattr(router, "routes", ()):
        try:
            match, _ = candidate.matches(original)
        except Exception:  # a route that cannot judge this scope is not it
            continue
        if match == Match.FULL:
            return str(getattr(candidate, "path", "unmatched")) or "unmatched"
    return "unmatched"
