"""What the service holds between requests, and the dependencies through which the routes reach it.

One :class:`ServiceState` per app, kept in ``app.state.vocalis``; routes ask for it (or for the loaded
Predictor) with ``Depends`` instead of closing over it, so each router lives in its own module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import anyio
from fastapi import Depends, Request

from vocalis.errors import VocalisError
from vocalis.inference import Predictor
from vocalis.monitoring.service import DriftMonitor
from vocalis.serving.api_errors import ApiError
from vocalis.serving.metrics import ServiceMetrics
from vocalis.serving.prediction import card_dict, load_predictor, resolve_parallelism
from vocalis.serving.settings import Settings
from vocalis.serving.store import LogUnavailableError, NewPrediction, PredictionStore

if TYPE_CHECKING:
    from vocalis.registry.resolve import ResolvedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A loaded Predictor, the name it answers under and, for a ``models:/`` URI, its registry facts."""

    predictor: Predictor
    label: str
    registry: ResolvedModel | None
    model_dir: Path


def registry_uri(settings: Settings) -> str | None:
    """The ``models:/`` URI the service follows: ``model_uri``, or a ``model_dir`` that is one; else None."""
    if settings.model_uri:
        return settings.model_uri
    return str(settings.model_dir) if str(settings.model_dir).startswith("models:/") else None


def load_model(settings: Settings, *, first: bool = False) -> LoadedModel:
    """Load the model the settings name (blocking: run it in a worker thread).

    With a ``models:/`` URI the alias is resolved again (the registry is imported only then: a service
    of a plain directory needs no MLflow). On the first load, a version that ``vocalis serve`` already
    resolved (``model_version`` + ``model_dir``) is taken as is, without asking the registry again.
    """
    uri = registry_uri(settings)
    if uri is None:
        predictor = load_predictor(settings)
        label = f"{predictor.card.name}/{predictor.version}"
        return LoadedModel(predictor, label, None, Path(settings.model_dir))
    from vocalis.registry.resolve import ResolvedModel, resolve_model

    if first and settings.model_version and (Path(settings.model_dir) / "model.onnx").is_file():
        resolved = ResolvedModel.from_label(uri, Path(settings.model_dir), settings.model_version)
    else:
        resolved = resolve_model(uri)
    predictor = load_predictor(settings.model_copy(update={"model_dir": resolved.directory}))
    return LoadedModel(predictor, resolved.label, resolved, resolved.directory)


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
        #: the name of the served model version, e.g. ``vocalis/3`` (registry) or ``<card name>/<version>``
        self.model_label: str | None = None
        #: where a ``models:/`` URI led (None for a plain directory)
        self.registry: ResolvedModel | None = None
        # each Predictor's label: a request names the version that answered it, even across a swap
        self._labels: weakref.WeakKeyDictionary[Predictor, str] = weakref.WeakKeyDictionary()
        self._poller: asyncio.Task[None] | None = None
        #: drift of the logged traffic against the artifact's reference (set by create_app)
        self.drift: DriftMonitor

    async def start(self) -> None:
        """Load the model and open (and migrate) the prediction log, off the event loop."""
        loaded = await anyio.to_thread.run_sync(lambda: load_model(self.settings, first=True))
        self.store = await anyio.to_thread.run_sync(PredictionStore, self.settings.database_url)
        self.publish_model(loaded.predictor, loaded)

    def label_of(self, predictor: Predictor) -> str:
        """The name of the model version ``predictor`` is (what the prediction log records)."""
        return self._labels.get(predictor) or f"{predictor.card.name}/{predictor.version}"

    def publish_model(self, predictor: Predictor, loaded: LoadedModel | None = None) -> None:
        """Make ``predictor`` the served model (one reference assignment: atomic for later requests)."""
        if loaded is not None:
            self._labels[predictor] = loaded.label
            self.registry = loaded.registry
            if loaded.registry is not None:  # the drift monitor reads the artifact from here
                self.settings.model_dir = loaded.model_dir
        self.model_label = self.label_of(predictor)
        self.predictor = predictor
        self.loaded_at = datetime.now(UTC)
        card = card_dict(predictor)
        self.metrics.set_model(str(card.get("name", "")), predictor.version, predictor.classes)
        self.metrics.model_loads.labels("ok").inc()

    async def reload(self) -> tuple[str | None, str]:
        """Load the model again (re-resolving a ``models:/`` alias) and swap it in under the lock.

        Returns the previous and the new label. A failed load or resolve keeps the old model and raises
        :class:`ApiError` 409 ``reload_failed``.
        """
        async with self.reload_lock:
            old = self.model_label
            try:
                loaded = await anyio.to_thread.run_sync(lambda: load_model(self.settings))
            except Exception as exc:  # any failure (registry down, MLflow error, bad files) keeps the model
                self.metrics.model_loads.labels("failed").inc()
                if not isinstance(exc, VocalisError | OSError | ValueError):
                    exc = RuntimeError(f"{type(exc).__name__}: {exc}")  # name what an unexpected one was
                log.warning("reload failed, keeping model %s: %s", old, exc)
                raise ApiError(409, "reload_failed", f"kept model {old}: {exc}") from None
            self.publish_model(loaded.predictor, loaded)
        log.info("model reloaded: %s -> %s", old, loaded.label)
        return old, loaded.label

    def start_polling(self) -> None:
        """Start the opt-in alias poller (``model_poll_s`` with a ``models:/`` URI); no-op otherwise."""
        interval, uri = self.settings.model_poll_s, registry_uri(self.settings)
        if interval and uri and self._poller is None:
            self._poller = asyncio.create_task(self._poll(uri, interval), name="vocalis-model-poll")
            log.info("polling %s every %g s for a new version", uri, interval)

    async def stop_polling(self) -> None:
        """Stop the poller (at shutdown)."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    async def _poll(self, uri: str, interval: float) -> None:
        from vocalis.registry.resolve import current_version

        while True:
            await asyncio.sleep(interval)
            try:
                # abandoned on shutdown: a slow registry must not hold the service's exit
                version = await anyio.to_thread.run_sync(lambda: current_version(uri), abandon_on_cancel=True)
            except Exception as exc:  # an unreachable registry keeps the served model; try again later
                log.warning("polling %s failed: %s", uri, exc)
                continue
            served = self.registry.version if self.registry is not None else None
            if version != served:
                log.info("%s moved: version %s -> %s; reloading", uri, served, version)
                with contextlib.suppress(ApiError):  # logged by reload(); the old model stays
                    await self.reload()

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


# The dependencies are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in the thread
# pool, a thread hop (and a wait for a free thread under load) per dependency per request for what is an
# attribute read.


def state_of(request: Request) -> ServiceState:
    """The app's :class:`ServiceState` (plain function, for code outside dependency injection)."""
    state: ServiceState = request.app.state.vocalis
    return state


async def get_state(request: Request) -> ServiceState:
    """Dependency: the app's :class:`ServiceState`."""
    return state_of(request)


State = Annotated[ServiceState, Depends(get_state)]


async def ready_predictor(state: State) -> Predictor:
    """Dependency: the loaded Predictor, held for the whole request (a reload cannot pull it away)."""
    if state.predictor is None:
        raise ApiError(503, "not_ready", "the model is not loaded")
    return state.predictor


LoadedPredictor = Annotated[Predictor, Depends(ready_predictor)]
