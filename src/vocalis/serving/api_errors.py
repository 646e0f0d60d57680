"""The service's refusal: :class:`ApiError` (HTTP status, machine-readable kind, detail).

Free of web-framework imports, so the BentoML service and the worker-thread code raise the same error.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A refused request: HTTP status, a machine-readable kind and a human-readable detail."""

    def __init__(self, status: int, error: str, detail: Any) -> None:
        super().__init__(f"{error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
