"""The project's error types: one per failure kind, each naming the file or field and the reason.

The CLI turns any :class:`VocalisError` into a one-line message and a non-zero exit; the service turns
them into a 4xx JSON body.
"""

from __future__ import annotations


class VocalisError(Exception):
    """Base class of every error vocalis raises on purpose."""


class ConfigError(VocalisError, ValueError):
    """A configuration value or command-line option is invalid."""


class DatasetError(VocalisError, ValueError):
    """A dataset (folder, CSV manifest, Hugging Face set) cannot be used."""


class CacheError(VocalisError):
    """A feature cache is missing, incomplete or does not match what is asked of it."""


class ArtifactError(VocalisError):
    """A model artifact (model.onnx + model.json) is missing, malformed or fails a check."""


class AudioDecodeError(VocalisError, ValueError):
    """A recording could not be turned into audio. ``str(err)`` is ``"<file>: <reason>"``."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class AudioTooShortError(AudioDecodeError):
    """A recording holds too little audio to be featurized at all (see
    :func:`vocalis.contracts.windows.require_featurizable`)."""
