"""vocalis: learn to recognise animal species from their vocalizations, and run that in production."""

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    # the version is read from the installed metadata when first asked for: importlib.metadata costs every
    # command about 80 ms to import, and only --version, export, the registry and the API's /version use it
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("vocalis")
        except PackageNotFoundError:  # running from a source tree that is not installed
            found = "0.0.0+unknown"
        globals()["__version__"] = found
        return found
    raise AttributeError(f"module 'vocalis' has no attribute {name!r}")
