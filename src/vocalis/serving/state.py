"""What the service holds between requests, and the dependencies through which the routes reach it.

One :class:`ServiceState` per app, kept in ``app.state.vocalis``; routes ask for it (or for the loaded
Predictor) with ``Depends`` instead of closing over it, so each router lives in its own module.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Annotated

import anyio
from fastapi import Depends, Request

from vocalis.inference import Predictor
from vocalis.monitoring.service import DriftMonitor
from vocalis.serving.api_errors import ApiError
from vocalis.serving.metrics import ServiceMetrics
from vocalis.serving.prediction import card_dict, load_predictor, resolve_parallelism
from vocalis.serving.settings import Settings
from vocalis.serving.store import LogUnavailableError, NewPrediction, PredictionStore

log = logging.getLogger(__name__)


class ServiceState:
    """Settings, the current Predictor, the prediction log, the metrics, and the limits on running."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.predictor: Predictor | None = None
        self.store: PredictionStore | None = None
        self.concurrency, self.threads = resolve_parallelism(settings)
        self.limiter = anyio.CapacityLimiter(self.concurrency)
        self.reload_lock = asyncio.Lock()
        self.loaded_at: datetime | None = None
        #: drift of the logged traffic against the artifact's reference (set by create_app)
        self.drift: DriftMonitor

    async def start(self) -> None:
        """Load the model and open (and migrate) the prediction log, off the event loop."""
        self.predictor = await anyio.to_thread.run_sync(load_predictor, self.settings)
        self.store = await anyio.to_thread.run_sync(PredictionStore, self.settings.database_url)
        self.publish_model(self.predictor)

    def publish_model(self, predictor: Predictor) -> None:
        """Make ``predictor`` the served model (one reference assignment: atomic for later requests)."""
        self.predictor = predictor
        self.loaded_at = datetime.now(UTC)
        card = card_dict(predictor)
        self.metrics.set_model(str(card.get("name", "")), predictor.version, predictor.classes)
        self.metrics.model_loads.labels("ok").inc()

    def close(self) -> None:
        """Release the prediction log."""
        if self.store is not None:
            self.store.close()

    async def persist(self, rows: list[NewPrediction]) -> None:
        """Commit ``rows`` to the prediction log before the response goes; 503 when it cannot."""
        if not rows:
            return
        if self.store is None:
            raise ApiError(503, "not_ready", "the prediction log is not open")
        try:
            await anyio.to_thread.run_sync(self.store.add, rows)
        except LogUnavailableError as exc:
            log.error("prediction log write refused: %s", exc)
            raise ApiError(503, "log_unavailable", f"the prediction log cannot be written: {exc}") from None
        except Exception as exc:
            # not acknowledged: a prediction the log cannot keep is an error, never a silent success
            log.exception("prediction log write failed")
            raise ApiError(
                503, "log_unavailable", f"the prediction log could not be written ({type(exc).__name__})"
            ) from None


def get_state(request: Request) -> ServiceState:
    """Dependency: the app's :class:`ServiceState`."""
    state: ServiceState = request.app.state.vocalis
    return state


State = Annotated[ServiceState, Depends(get_state)]


def ready_predictor(state: State) -> Predictor:
    """Dependency: the loaded Predictor, held for the whole request (a reload cannot pull it away)."""
    if state.predictor is None:
        raise ApiError(503, "not_ready", "the model is not loaded")
    return state.predictor


LoadedPredictor = Annotated[Predictor, Depends(ready_predictor)]
