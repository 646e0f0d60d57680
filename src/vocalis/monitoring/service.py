"""Drift in the inference service: ``GET /v1/monitoring/drift`` and the drift gauges.

Self-contained so that the service mounts it with a few lines (see docs/monitoring.md, "Wiring"):

    monitor = DriftMonitor(store=lambda: state.store, artifact_dir=lambda: settings.model_dir,
                           registry=metrics.registry)
    app.include_router(drift_router(monitor, require_admin=_check_admin))
    # in the lifespan, after the store is open:  monitor.start()  ...  await monitor.stop()

The background task recomputes drift every ``VOCALIS_DRIFT_INTERVAL_S`` seconds (0, the default, turns it
off) over the configured window and publishes ``vocalis_drift_share`` and ``vocalis_drift_detected``, which
the Prometheus rule ``VocalisDriftDetected`` alerts on. The endpoint computes the same summary on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Gauge
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vocalis.errors import ConfigError
from vocalis.monitoring.errors import MonitoringError, NoReferenceError, NotEnoughDataError

log = logging.getLogger(__name__)


class DriftSettings(BaseSettings):
    """Drift knobs of the service; field ``x`` is read from ``VOCALIS_DRIFT_X``."""

    model_config = SettingsConfigDict(env_prefix="VOCALIS_DRIFT_", env_file=None, extra="ignore")

    interval_s: float = Field(default=0.0, ge=0, description="Seconds between drift runs; 0 turns them off.")
    since: str | None = Field(default="24h", description="Window: predictions of the last ...")
    last: int | None = Field(default=500, gt=0, description="... and at most the last N of them.")
    min_rows: int = Field(default=30, ge=2, description="Fewer predictions than this: no verdict.")
    p_threshold: float = Field(default=0.05, gt=0, lt=1, description="p-value of a drifted column.")
    drift_share: float = Field(default=0.5, gt=0, le=1, description="Drifted share that is drift.")
    # the same tests either way; Evidently also renders plots on every run, which a service has no use for
    engine: str = Field(default="scipy", pattern="^(scipy|evidently)$", description="scipy or evidently.")

    @field_validator("since", "last", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        return None if v in ("", None) else v


class DriftGauges:
    """The drift gauges, registered in the service's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.share = Gauge(
            "vocalis_drift_share",
            "Share of drift tests that flagged drift in the last run (NaN: no verdict)",
            registry=registry,
        )
        self.detected = Gauge(
            "vocalis_drift_detected", "1 when the last drift run detected drift, else 0", registry=registry
        )
        self.samples = Gauge(
            "vocalis_drift_current_samples",
            "Logged predictions in the last drift run's window",
            registry=registry,
        )
        self.last_run = Gauge(
            "vocalis_drift_last_run_timestamp_seconds", "Unix time of the last drift run", registry=registry
        )
        self.share.set(math.nan)

    def publish(self, summary: dict[str, Any] | None, n_current: int) -> None:
        """Set the gauges from a summary, or to 'no verdict' (share NaN, detected 0) when there is none."""
        if summary is None:
            self.share.set(math.nan)
            self.detected.set(0)
        else:
            self.share.set(float(summary["drift_share"]))
            self.detected.set(1 if summary["drift_detected"] else 0)
        self.samples.set(n_current)
        self.last_run.set(time.time())


class DriftMonitor:
    """Computes drift for the service, on demand and periodically, and keeps the gauges current."""

    def __init__(
        self,
        *,
        store: Callable[[], Any],
        artifact_dir: Callable[[], Path | str],
        registry: CollectorRegistry,
        settings: DriftSettings | None = None,
    ) -> None:
        self._store = store
        self._artifact_dir = artifact_dir
        self.settings = settings or DriftSettings()
        self.gauges = DriftGauges(registry)
        self.last_summary: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None

    def compute(self, since: str | None, last: int | None) -> dict[str, Any]:
        """The drift summary of a window (blocking: run it in a worker thread). Raises monitoring errors."""
        from vocalis.monitoring.drift import drift_for_artifact, make_window

        store = self._store()
        if store is None:
            raise MonitoringError("the prediction log is not open yet")
        s = self.settings
        try:
            result = drift_for_artifact(
                self._artifact_dir(),
                store,
                make_window(since, last),
                min_rows=s.min_rows,
                p_threshold=s.p_threshold,
                drift_share=s.drift_share,
                engine=s.engine,
            )
        except ImportError as exc:
            # the slim service image has no scipy/Evidently: say which extra brings them
            raise MonitoringError(
                f"drift needs the monitoring extra (pip install 'vocalis[monitoring]'): {exc}"
            ) from None
        return result.to_dict()

    def refresh(self) -> dict[str, Any] | None:
        """One run over the configured window; updates the gauges. ``None`` when there is no verdict."""
        s = self.settings
        try:
            summary = self.compute(s.since, s.last)
        except NotEnoughDataError as exc:
            log.info("drift: no verdict (%s)", exc)
            self.gauges.publish(None, _count_in(exc))
            return None
        except MonitoringError as exc:
            log.warning("drift: no verdict (%s)", exc)
            self.gauges.publish(None, 0)
            return None
        self.gauges.publish(summary, int(summary["sample_sizes"]["current"]))
        self.last_summary = summary
        return summary

    async def _loop(self) -> None:
        while True:
            try:
                await anyio.to_thread.run_sync(self.refresh)
            except Exception:  # a failing run must not kill the loop: the next one may succeed
                log.exception("drift run failed")
            await asyncio.sleep(self.settings.interval_s)

    def start(self) -> asyncio.Task[None] | None:
        """Start the periodic runs (no-op when ``interval_s`` is 0). Call from the app's lifespan."""
        if self.settings.interval_s <= 0 or self._task is not None:
            return None
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="vocalis-drift")
        log.info("drift runs every %.0f s", self.settings.interval_s)
        return self._task

    async def stop(self) -> None:
        """Cancel the periodic runs and wait for the task to end."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _count_in(exc: NotEnoughDataError) -> int:
    # the message starts with the count ("12 logged prediction(s) ...")
    head = str(exc).split(" ", 1)[0]
    return int(head) if head.isdigit() else 0


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


def drift_router(monitor: DriftMonitor, require_admin: Callable[..., Any]) -> APIRouter:
    """The ``/v1/monitoring`` routes. ``require_admin(request)`` raises when the caller is not an admin."""
    router = APIRouter(prefix="/v1/monitoring", tags=["monitoring"])

    @router.get("/drift", dependencies=[Depends(require_admin)])
    async def drift_summary(
        since: str | None = Query(None, description="Window: predictions of the last 7d, 12h, 30m, ..."),
        last: int | None = Query(None, gt=0, description="Window: the last N predictions."),
    ) -> Any:
        """Drift of the logged traffic against the artifact's reference (admin token).

        Without ``since``/``last`` the service's configured window is used and the drift gauges are
        updated with the result, so the endpoint and ``vocalis_drift_*`` always agree.
        """
        default = since is None and last is None
        try:
            if default:
                summary = await anyio.to_thread.run_sync(
                    monitor.compute, monitor.settings.since, monitor.settings.last
                )
                monitor.gauges.publish(summary, int(summary["sample_sizes"]["current"]))
                monitor.last_summary = summary
            else:
                summary = await anyio.to_thread.run_sync(monitor.compute, since, last)
        except NoReferenceError as exc:
            return _error(409, "no_reference", str(exc))
        except NotEnoughDataError as exc:
            if default:
                monitor.gauges.publish(None, _count_in(exc))
            return _error(409, "not_enough_data", str(exc))
        except ConfigError as exc:
            return _error(422, "invalid_option", str(exc))
        except MonitoringError as exc:
            return _error(503, "drift_unavailable", str(exc))
        return summary

    return router
