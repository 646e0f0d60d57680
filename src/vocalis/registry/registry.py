"""The MLflow Model Registry calls: register an artifact as a model version, list, show, move aliases.

A model version is an exported artifact (``model.onnx`` + ``model.json``) logged as an MLflow model with
the pyfunc flavour of :mod:`vocalis.registry.pyfunc`, tagged with the card's facts (classes, sample rate,
data hash, git commit, test metrics) and linked to its training run: when ``run.json`` names an MLflow run
that exists in this tracking store, the model is logged into that run; otherwise into a run of the
``vocalis-registry`` experiment that records the run directory.

Aliases are the stages: ``staging`` and ``production``. Moving ``production`` goes through the gate
(:mod:`vocalis.registry.gate`); this module only moves it.

The tracking store is ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the
working directory (the store training writes to by default).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vocalis import __version__
from vocalis.contracts.card import CARD_FILE, MODEL_FILE, ModelCard, artifact_files, required_files
from vocalis.contracts.run_files import read_json_object
from vocalis.errors import ArtifactError, ConfigError, VocalisError

log = logging.getLogger(__name__)

DEFAULT_NAME = "vocalis"
#: the stages a version can be promoted to (MLflow aliases)
STAGES = ("staging", "production")
#: every tag vocalis writes starts with this
TAG = "vocalis."
#: the experiment that holds registration runs when the training run is not in this store
REGISTRY_EXPERIMENT = "vocalis-registry"
#: the pip requirements recorded with the model: what the torch-free predictor imports
RUNTIME_REQUIREMENTS = [
    f"vocalis=={__version__}",
    "onnxruntime",
    "numpy",
    "pandas",
    "soundfile",
    "soxr",
]

_REF = re.compile(r"^(?:models:/)?(?P<name>[^@/]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))?$")


class RegistryError(VocalisError):
    """The model registry cannot do what was asked: unknown name/alias/version, unreachable store."""


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``NAME``, ``NAME@ALIAS``, ``NAME/VERSION`` or ``models:/...`` reference."""

    name: str
    version: str | None = None
    alias: str | None = None

    @property
    def uri(self) -> str:
        """The ``models:/`` URI of this reference."""
        if self.alias:
            return f"models:/{self.name}@{self.alias}"
        if self.version:
            return f"models:/{self.name}/{self.version}"
        return f"models:/{self.name}"


def parse_ref(ref: str) -> ModelRef:
    """Parse a model reference; :class:`ConfigError` when it is none of the accepted forms."""
    m = _REF.match(ref.strip())
    if not m:
        raise ConfigError(f"model reference '{ref}': expected NAME@ALIAS, NAME/VERSION or models:/NAME@ALIAS")
    return ModelRef(m["name"], m["version"], m["alias"])


@dataclass
class VersionInfo:
    """A model version as the registry holds it."""

    name: str
    version: str
    aliases: list[str]
    tags: dict[str, str]
    run_id: str | None
    source: str
    status: str
    created_ms: int
    description: str = ""

    @property
    def metrics(self) -> dict[str, float]:
        """The test metrics recorded as ``vocalis.metric.*`` tags."""
        out = {}
        for key, value in self.tags.items():
            if key.startswith(TAG + "metric."):
                try:
                    out[key[len(TAG + "metric.") :]] = float(value)
                except ValueError:
                    continue
        return out

    @property
    def classes(self) -> list[str]:
        """The class names recorded at registration."""
        raw = self.tags.get(TAG + "classes")
        return list(json.loads(raw)) if raw else []

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "name": self.name,
            "version": self.version,
            "aliases": self.aliases,
            "run_id": self.run_id,
            "source": self.source,
            "status": self.status,
            "created_ms": self.created_ms,
            "metrics": self.metrics,
            "tags": self.tags,
        }


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: the argument, ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` here.

    A relative SQLite path becomes absolute so that every process (and ``mlflow ui``) opens the same file.
    """
    value = uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    prefix = "sqlite:///"
    if value.startswith(prefix) and not value[len(prefix) :].startswith("/"):
        value = prefix + str(Path(value[len(prefix) :]).resolve())
    return value


def _artifact_root(uri: str) -> str | None:
    """For a SQLite store, ``mlruns/`` next to the database file (where training puts its artifacts)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        return (Path(uri[len(prefix) :]).parent / "mlruns").resolve().as_uri()
    return None


class Registry:
    """The MLflow registry of one tracking store (every call raises :class:`RegistryError` on failure)."""

    def __init__(self, tracking_uri: str | None = None) -> None:
        # a tracking server that is down must fail in seconds, not after minutes of retries
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        # progress bars on stderr would drown the one-line messages of the command line
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        from mlflow import MlflowClient

        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        prefix = "sqlite:///"
        if self.tracking_uri.startswith(prefix):
            parent = Path(self.tracking_uri[len(prefix) :]).parent
            if not parent.is_dir():
                raise RegistryError(f"tracking URI {self.tracking_uri}: the folder {parent} does not exist")
        try:
            self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
            self.client.search_registered_models(max_results=1)
        except Exception as exc:  # MLflow raises MlflowException, requests' errors, SQLAlchemy's ...
            raise RegistryError(
                f"tracking URI {self.tracking_uri} cannot be reached: {_first_line(exc)}"
            ) from None

    # -- reading ------------------------------------------------------------------------------------
    def _info(self, mv: Any) -> VersionInfo:
        return VersionInfo(
            name=mv.name,
            version=str(mv.version),
            aliases=sorted(getattr(mv, "aliases", []) or []),
            tags=dict(mv.tags or {}),
            run_id=mv.run_id or None,
            source=str(mv.source),
            status=str(mv.status),
            created_ms=int(mv.creation_timestamp or 0),
            description=mv.description or "",
        )

    def names(self) -> list[str]:
        """Every registered model name."""
        return sorted(m.name for m in self.client.search_registered_models())

    def versions(self, name: str | None = None) -> list[VersionInfo]:
        """Versions of ``name`` (every model when None), newest first."""
        if name is not None:
            self._require_name(name)
        names = [name] if name else self.names()
        out: list[VersionInfo] = []
        for n in names:
            found = self.client.search_model_versions(f"name = '{_quote(n)}'")
            # search results may omit aliases: read them from the registered model
            aliases: dict[str, list[str]] = {}
            for alias, version in (self.client.get_registered_model(n).aliases or {}).items():
                aliases.setdefault(str(version), []).append(alias)
            for mv in found:
                info = self._info(mv)
                info.aliases = sorted(aliases.get(info.version, []))
                out.append(info)
        return sorted(out, key=lambda v: (v.name, -int(v.version)))

    def _require_name(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            known = self.names()
            raise RegistryError(
                f"model '{name}' is not registered (registered: {', '.join(known) or 'none'})"
            ) from None

    def get(self, ref: str | ModelRef) -> VersionInfo:
        """The version a ``NAME@ALIAS`` / ``NAME/VERSION`` reference points at."""
        from mlflow.exceptions import MlflowException

        r = parse_ref(ref) if isinstance(ref, str) else ref
        self._require_name(r.name)
        try:
            if r.alias:
                mv = self.client.get_model_version_by_alias(r.name, r.alias)
            elif r.version:
                mv = self.client.get_model_version(r.name, r.version)
            else:
                raise RegistryError(f"'{r.name}': name a version (NAME/VERSION) or an alias (NAME@ALIAS)")
        except MlflowException:
            aliases = sorted(self.client.get_registered_model(r.name).aliases or {})
            what = f"alias '{r.alias}'" if r.alias else f"version {r.version}"
            raise RegistryError(
                f"model '{r.name}' has no {what} (aliases: {', '.join(aliases) or 'none'})"
            ) from None
        info = self._info(mv)
        info.aliases = sorted(
            a
            for a, v in (self.client.get_registered_model(r.name).aliases or {}).items()
            if str(v) == info.version
        )
        return info

    def alias_version(self, name: str, alias: str) -> VersionInfo | None:
        """The version holding ``alias``, or None when no version holds it yet."""
        self._require_name(name)
        aliases = self.client.get_registered_model(name).aliases or {}
        return self.get(ModelRef(name, alias=alias)) if alias in aliases else None

    # -- writing ------------------------------------------------------------------------------------
    def set_alias(self, name: str, version: str, alias: str) -> None:
        """Point ``alias`` at ``version`` (and stamp the version with when it got there)."""
        from datetime import UTC, datetime

        self.client.set_registered_model_alias(name, alias, version)
        self.client.set_model_version_tag(
            name, version, f"{TAG}promoted.{alias}", datetime.now(UTC).isoformat(timespec="seconds")
        )

    def set_version_tags(self, name: str, version: str, tags: dict[str, Any]) -> None:
        """Set several tags on a version (values turned into strings)."""
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, _tag_value(value))

    def set_model_tags(self, name: str, tags: dict[str, Any]) -> None:
        """Set several tags on the registered model."""
        for key, value in tags.items():
            self.client.set_registered_model_tag(name, key, _tag_value(value))

    def model_tags(self, name: str) -> dict[str, str]:
        """The registered model's tags."""
        return dict(self.client.get_registered_model(name).tags or {})

    def attach(self, info: VersionInfo, files: list[Path], folder: str) -> list[str]:
        """Log ``files`` as artifacts of the version's run under ``folder``; return their artifact URIs."""
        if not info.run_id:
            return []
        run = self.client.get_run(info.run_id)
        for f in files:
            self.client.log_artifact(info.run_id, str(f), artifact_path=folder)
        return [f"{run.info.artifact_uri}/{folder}/{f.name}" for f in files]

    def register(
        self, artifact_dir: str | Path, *, name: str = DEFAULT_NAME, run_dir: str | Path | None = None
    ) -> VersionInfo:
        """Register an exported artifact as a new version of ``name`` (see the module docstring).

        Everything that can be checked is checked before anything is written: the artifact loads
        (card + ONNX session), the run directory (when given) exists.
        """
        import mlflow

        from vocalis.inference import Predictor
        from vocalis.registry.pyfunc import ARTIFACT_KEY, VocalisPyfunc

        artifact = Path(artifact_dir)
        if not artifact.is_dir():
            raise ArtifactError(f"{artifact}: not a directory (expected an exported model artifact)")
        if not (artifact / MODEL_FILE).is_file() or not (artifact / CARD_FILE).is_file():
            raise ArtifactError(f"{artifact}: not a model artifact (needs {MODEL_FILE} and {CARD_FILE})")
        card = ModelCard.load(artifact)
        missing = [f for f in required_files(card) if not (artifact / f).is_file()]
        if missing:  # a two-part artifact whose backbone file or licence did not travel with it
            raise ArtifactError(f"{artifact}: incomplete artifact, missing {', '.join(missing)}")
        Predictor.from_dir(artifact, threads=1)  # ArtifactError when the card or the graph is broken
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
            raise ConfigError(f"--name: '{name}' must be letters, digits, '.', '_' or '-'")
        run_path = Path(run_dir) if run_dir else _card_run_dir(card)
        if run_dir is not None and not Path(run_dir).is_dir():
            raise ConfigError(f"--run: {run_dir} is not a run directory")
        run_json = read_json_object(run_path / "run.json") if run_path else {}
        training_run_id = run_json.get("mlflow_run_id")
        tags = card_tags(card, artifact)
        if run_path:
            tags[TAG + "run_dir"] = str(run_path.resolve())
        if training_run_id:
            tags[TAG + "training_run_id"] = str(training_run_id)

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        existing = self._existing_run(training_run_id)
        if existing is not None:
            log.info("logging the model into its training run %s", existing)
            run_ctx = mlflow.start_run(run_id=existing)
        else:
            run_ctx = mlflow.start_run(
                experiment_id=self._registry_experiment(), run_name=f"register-{card.name}"
            )
        try:
            with run_ctx as run, tempfile.TemporaryDirectory() as tmp:
                # artifacts are copied under the dict key's directory name: give it a stable one
                staged = Path(tmp) / ARTIFACT_KEY
                _copy_artifact(artifact, staged)
                mlflow.set_tags({k: v for k, v in tags.items() if k.startswith(TAG + "run")})
                model_info = mlflow.pyfunc.log_model(
                    name="vocalis-model",
                    python_model=VocalisPyfunc(),
                    artifacts={ARTIFACT_KEY: str(staged)},
                    pip_requirements=runtime_requirements(card),
                    metadata={"vocalis_card": card.to_dict()},
                )
                mv = mlflow.register_model(model_info.model_uri, name, tags=tags)
                run_id = run.info.run_id
        except VocalisError:
            raise
        except Exception as exc:
            raise RegistryError(f"registering {artifact} as '{name}' failed: {_first_line(exc)}") from None
        log.info("registered %s as %s version %s (run %s)", artifact, name, mv.version, run_id)
        description = (
            f"{card.name} {card.version}: {len(card.classes)} classes at {card.sample_rate} Hz, "
            f"{card.window_s:g} s windows; test metrics {json.dumps(card.metrics.get('accuracy'))} accuracy"
        )
        if card.get("licence"):
            description += f"; licence: {card.get('licence')}"
        self.client.update_model_version(name, mv.version, description=description)
        return self.get(ModelRef(name, version=str(mv.version)))

    def _existing_run(self, run_id: str | None) -> str | None:
        if not run_id:
            return None
        try:
            return str(self.client.get_run(str(run_id)).info.run_id)
        except Exception:  # not in this store: the training tracked elsewhere (or not at all)
            log.info(
                "training run %s is not in %s: a registration run links it by tag", run_id, self.tracking_uri
            )
            return None

    def _registry_experiment(self) -> str:
        exp = self.client.get_experiment_by_name(REGISTRY_EXPERIMENT)
        if exp is not None:
            return str(exp.experiment_id)
        return str(
            self.client.create_experiment(
                REGISTRY_EXPERIMENT, artifact_location=_artifact_root(self.tracking_uri)
            )
        )


def runtime_requirements(card: ModelCard) -> list[str]:
    """What the model's environment needs: :data:`RUNTIME_REQUIREMENTS`, plus LiteRT when the card's
    backbone runs in it (a two-part transfer artifact)."""
    backbone = card.get("backbone")
    if isinstance(backbone, dict) and backbone.get("runtime") == "litert":
        return [*RUNTIME_REQUIREMENTS, "ai-edge-litert"]
    return list(RUNTIME_REQUIREMENTS)


def card_tags(card: ModelCard, artifact: Path) -> dict[str, str]:
    """The card's facts as version tags: classes, sample rate, window, data hash, git commit, metrics."""
    tags: dict[str, Any] = {
        TAG + "card_name": card.name,
        TAG + "card_version": card.version,
        TAG + "classes": json.dumps(card.classes),
        TAG + "n_classes": len(card.classes),
        TAG + "sample_rate": card.sample_rate,
        TAG + "window_s": card.window_s,
        TAG + "hop_s": card.hop_s,
        TAG + "architecture": card.architecture,
        TAG + "cache_hash": card.cache_hash or "",
        TAG + "git_commit": card.git_commit or "",
        TAG + "quantization": card.quantization or "fp32",
        TAG + "artifact_dir": str(artifact.resolve()),
    }
    cache_dir = (card.source or {}).get("cache_dir")
    if cache_dir:
        tags[TAG + "cache_dir"] = cache_dir
    backbone = card.get("backbone")
    if isinstance(backbone, dict):  # a transfer artifact: which pretrained weights, under which licence
        tags[TAG + "backbone"] = f"{backbone.get('name')} v{backbone.get('version')}"
        tags[TAG + "backbone_runtime"] = backbone.get("runtime") or ""
        tags[TAG + "licence"] = card.get("licence") or backbone.get("licence") or ""
    for key, value in (card.metrics or {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            tags[f"{TAG}metric.{key}"] = value
    return {k: _tag_value(v) for k, v in tags.items()}


def _card_run_dir(card: ModelCard) -> Path | None:
    run_dir = (card.source or {}).get("run_dir")
    return Path(run_dir) if run_dir and Path(run_dir).is_dir() else None


def _copy_artifact(src: Path, dst: Path) -> None:
    """Copy the artifact's own files (model, card, drift reference, a transfer artifact's backbone)."""
    import shutil

    dst.mkdir(parents=True)
    for f in artifact_files(src):
        shutil.copy2(f, dst / f.name)


def _tag_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def _quote(name: str) -> str:
    return name.replace("'", "\\'")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


__all__ = [
    "DEFAULT_NAME",
    "STAGES",
    "ModelRef",
    "Registry",
    "RegistryError",
    "VersionInfo",
    "card_tags",
    "parse_ref",
    "resolve_tracking_uri",
    "runtime_requirements",
]
