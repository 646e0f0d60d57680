"""Run the real service app with the drift router and task mounted (the wiring docs/monitoring.md lists).

Usage: python drift_server.py ARTIFACT DATABASE_URL PORT. Used by the real-Prometheus test until the
service mounts the drift monitor itself.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from vocalis.monitoring.service import DriftMonitor, DriftSettings, drift_router
from vocalis.serving.app import create_app
from vocalis.serving.settings import Settings


def main() -> None:
    """Serve on 127.0.0.1:PORT until killed."""
    artifact, url, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    settings = Settings(model_dir=artifact, database_url=url, threads=1)
    app = create_app(settings)
    state = app.state.vocalis
    monitor = DriftMonitor(
        store=lambda: state.store,
        artifact_dir=lambda: settings.model_dir,
        registry=state.metrics.registry,
        settings=DriftSettings(interval_s=1.0, since=None, last=60),
    )
    app.include_router(drift_router(monitor, require_admin=lambda: None))
    service_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[None]:
        async with service_lifespan(a):
            monitor.start()
            try:
                yield
            finally:
                await monitor.stop()

    app.router.lifespan_context = lifespan
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
