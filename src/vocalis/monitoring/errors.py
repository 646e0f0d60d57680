"""Error types of drift monitoring, in the project's hierarchy (:mod:`vocalis.errors`)."""

from __future__ import annotations

from vocalis.errors import ArtifactError, VocalisError


class MonitoringError(VocalisError):
    """Drift cannot be computed as asked."""


class NoReferenceError(ArtifactError, MonitoringError):
    """The model artifact carries no drift reference (exported before references, or without audio)."""


class NotEnoughDataError(MonitoringError):
    """Too few logged predictions in the window for a drift test to mean anything."""
