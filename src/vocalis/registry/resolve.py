"""``models:/NAME@ALIAS`` (or ``models:/NAME/VERSION``) -> a local artifact directory, through a cache.

The service calls :func:`resolve_model` at start and again on reload: the alias is looked up in the
registry, the version's files are downloaded once into ``<cache>/<name>/<version>/`` (versions are
immutable, so a cached version is never fetched again) and the directory holding ``model.onnx`` +
``model.json`` is returned with the version that answered. A plain directory passes through untouched.

The cache is ``$VOCALIS_MODEL_CACHE`` or ``~/.cache/vocalis/models``. Downloads land in a temporary
folder next to the cache entry and are renamed into place, so a killed download never leaves a half
model that a later start would trust.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vocalis.contracts.card import CARD_FILE, MODEL_FILE
from vocalis.errors import ArtifactError

if TYPE_CHECKING:
    from vocalis.registry.registry import Registry

log = logging.getLogger(__name__)

CACHE_ENV = "VOCALIS_MODEL_CACHE"


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model reference led: the local artifact directory and the registry version behind it."""

    uri: str
    directory: Path
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None

    @property
    def label(self) -> str:
        """How the service should name the model that answers: ``NAME/VERSION`` (or the directory)."""
        return f"{self.name}/{self.version}" if self.name and self.version else str(self.directory)

    @classmethod
    def from_label(cls, uri: str, directory: Path, label: str) -> ResolvedModel:
        """What an earlier :func:`resolve_model` found, rebuilt from its URI, directory and ``label``.

        ``vocalis serve`` resolves once and hands the result to its workers through the environment
        (``VOCALIS_MODEL_URI``, ``VOCALIS_MODEL_DIR``, ``VOCALIS_MODEL_VERSION``); this reads it back
        without asking the registry again.
        """
        name, _, version = label.rpartition("/")
        alias = uri.split("@", 1)[1] if "@" in uri else None
        return cls(uri=uri, directory=directory, name=name or None, version=version or None, alias=alias)

    def describe(self) -> dict[str, str | None]:
        """The registry facts the service shows under ``registry`` in ``/v1/model``."""
        return {"name": self.name, "version": self.version, "alias": self.alias, "uri": self.uri}


def require_mlflow() -> None:
    """Raise :class:`ConfigError` naming the extra to install when MLflow is missing.

    Only a ``models:/`` URI needs MLflow; the service and ``vocalis predict`` run without it.
    """
    from vocalis.errors import ConfigError

    try:
        import mlflow  # noqa: F401  (what every models:/ lookup imports next)
    except ImportError:
        raise ConfigError(
            "models:/ URIs need MLflow, which is not installed: install the 'train' extra "
            "(uv sync --extra train, or pip install 'vocalis[train]'), or serve an artifact directory"
        ) from None


def is_registry_uri(uri: str | Path) -> bool:
    """True for ``models:/...`` references."""
    return str(uri).startswith("models:/")


def default_cache_dir() -> Path:
    """``$VOCALIS_MODEL_CACHE`` or ``~/.cache/vocalis/models``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "vocalis" / "models"


def _artifact_in(model_dir: Path) -> Path:
    """The artifact directory inside a downloaded MLflow model (``artifacts/<key>`` of the pyfunc)."""
    from vocalis.registry.pyfunc import ARTIFACT_KEY

    for candidate in (model_dir / "artifacts" / ARTIFACT_KEY, model_dir):
        if (candidate / MODEL_FILE).is_file() and (candidate / CARD_FILE).is_file():
            return candidate
    found = sorted(p.parent for p in model_dir.rglob(CARD_FILE) if (p.parent / MODEL_FILE).is_file())
    if found:
        return found[0]
    raise ArtifactError(f"{model_dir}: the registered model holds no {MODEL_FILE} + {CARD_FILE}")


def resolve_model(
    uri: str | Path, *, tracking_uri: str | None = None, cache_dir: str | Path | None = None
) -> ResolvedModel:
    """Resolve a ``models:/`` URI (or a directory) to a local artifact directory; see the module docstring.

    Raises:
        RegistryError: unknown model name, alias or version; tracking store unreachable.
        ArtifactError: the version's files hold no artifact.
    """
    if not is_registry_uri(uri):
        return ResolvedModel(uri=str(uri), directory=Path(uri))
    require_mlflow()
    import mlflow.artifacts

    from vocalis.registry.registry import Registry, RegistryError, parse_ref

    ref = parse_ref(str(uri))
    registry = Registry(tracking_uri)
    info = registry.get(ref)
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    entry = root / _safe(info.name) / info.version
    if not entry.is_dir():
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{info.version}.download-", dir=entry.parent))
        try:
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{info.name}/{info.version}",
                dst_path=str(tmp),
                tracking_uri=registry.tracking_uri,
            )
            try:
                tmp.rename(entry)
            except OSError:  # another process won the race: its copy is the same immutable version
                shutil.rmtree(tmp, ignore_errors=True)
        except Exception as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, RegistryError | ArtifactError):
                raise
            raise RegistryError(f"{ref.uri}: downloading version {info.version} failed: {exc}") from None
        log.info("downloaded %s version %s into %s", info.name, info.version, entry)
    else:
        log.info("%s version %s from the cache %s", info.name, info.version, entry)
    return ResolvedModel(
        uri=ref.uri,
        directory=_artifact_in(entry),
        name=info.name,
        version=info.version,
        alias=ref.alias,
        run_id=info.run_id,
    )


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


#: opt-in alias polling of the service: seconds between looks at the registry (unset or 0: off)
POLL_ENV = "VOCALIS_MODEL_POLL_S"


def current_version(uri: str, *, tracking_uri: str | None = None) -> str:
    """The version a ``models:/NAME@ALIAS`` URI points at now: one registry lookup, no download.

    What a poller compares with the version it serves; when they differ it calls :func:`resolve_model`
    and swaps the model in. The registry client is kept between calls (a poller asks every few seconds).
    """
    from vocalis.registry.registry import parse_ref

    require_mlflow()
    return _registry(tracking_uri).get(parse_ref(uri)).version


@functools.lru_cache(maxsize=8)
def _registry(tracking_uri: str | None) -> Registry:
    from vocalis.registry.registry import Registry

    return Registry(tracking_uri)


def poll_interval(environ: dict[str, str] | None = None) -> float | None:
    """``VOCALIS_MODEL_POLL_S`` as seconds, None when polling is off; :class:`ConfigError` if malformed."""
    from vocalis.errors import ConfigError

    raw = (os.environ if environ is None else environ).get(POLL_ENV, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{POLL_ENV}: '{raw}' is not a number of seconds") from None
    if value < 0:
        raise ConfigError(f"{POLL_ENV}: must be >= 0 seconds, got {raw}")
    return value or None
