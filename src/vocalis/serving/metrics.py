"""Prometheus metrics of the service (prometheus-client), one registry per app instance.

A registry per app (not the process-global default) keeps two apps in one process, as in the tests,
from colliding, and lets ``/metrics`` expose exactly the service's series.

With ``--workers N`` each worker process keeps its own counters; scrape through a per-pod sidecar or run
one worker per container (the usual Kubernetes layout) to aggregate them.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)

# the *_created series double the exposition for no monitoring value
disable_created_metrics()

#: latency buckets (seconds): a 3-second window predicts in ~10 ms, an hour-long file in tens of seconds
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ServiceMetrics:
    """The service's metric families, registered in their own :class:`CollectorRegistry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "vocalis_requests",
            "HTTP requests by endpoint, method and status",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "vocalis_request_latency_seconds",
            "Total request latency by endpoint",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_latency = Histogram(
            "vocalis_inference_latency_seconds",
            "Model inference time per file",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.audio_seconds = Counter(
            "vocalis_audio_seconds_processed", "Seconds of audio the model has classified", registry=r
        )
        self.predictions = Counter(
            "vocalis_predictions", "Files classified, by top label", ["label"], registry=r
        )
        self.errors = Counter("vocalis_errors", "Refused or failed requests by kind", ["kind"], registry=r)
        self.in_flight = Gauge("vocalis_in_flight_requests", "Requests being processed now", registry=r)
        self.model_info = Info("vocalis_model", "The model being served", registry=r)
        self.model_loads = Counter(
            "vocalis_model_loads", "Model (re)loads by outcome", ["outcome"], registry=r
        )

    def set_model(self, name: str, version: str, classes: list[str]) -> None:
        """Publish which model is served."""
        self.model_info.info(
            {"name": name, "version": version, "classes": ",".join(classes), "n_classes": str(len(classes))}
        )

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)
