"""vocalis: learn to recognise animal species from their vocalizations, and run that in production."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vocalis")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
