"""Service settings, read from the environment with the ``VOCALIS_`` prefix (pydantic-settings).

Every knob of the service lives here so that a container is configured by environment variables alone,
e.g. ``VOCALIS_MODEL_DIR=/models/current VOCALIS_DATABASE_URL=postgresql+psycopg://... vocalis serve``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: a CORS origin: "*" or scheme://host[:port], nothing after
_ORIGIN = re.compile(
    r"^(\*|https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:]+\](:[0-9]{1,5})?)$"
)


class Settings(BaseSettings):
    """Configuration of the inference service. Field ``x`` is read from ``VOCALIS_X``."""

    # "model_" is pydantic's protected namespace; our fields are about the ML model, not pydantic models
    model_config = SettingsConfigDict(
        env_prefix="VOCALIS_", env_file=None, extra="ignore", protected_namespaces=()
    )

    model_dir: Path = Field(
        default=Path("artifacts/demo"), description="Model artifact directory (model.onnx + model.json)."
    )
    database_url: str = Field(
        default="sqlite:///predictions.db",
        description="SQLAlchemy URL of the prediction log (sqlite:///file.db or postgresql+psycopg://...).",
    )
    max_upload_bytes: int = Field(
        default=50 * 1024 * 1024, gt=0, description="Largest request body accepted."
    )
    max_duration_s: float = Field(default=3600.0, gt=0, description="Longest recording accepted, in seconds.")
    max_batch_files: int = Field(default=32, gt=0, description="Most files in one /v1/predict/batch request.")
    max_windows: int = Field(
        default=20_000,
        gt=0,
        description="Most analysis windows one file may ask for (duration / hop); more: 413.",
    )
    stream_block_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Seconds of audio decoded at once per request: a longer recording is scored from a "
        "temporary file in blocks of this length, so memory per request does not grow with its duration.",
    )
    min_hop_s: float = Field(
        default=0.05, gt=0, description="Smallest hop a request may ask for, in seconds (smaller: 422)."
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="Seconds a connection may take to send a request's headers."
    )
    body_timeout_s: float = Field(
        default=60.0, gt=0, description="Seconds a request may take to send its whole body (then 408)."
    )
    max_concurrent_uploads: int = Field(
        default=32, gt=0, description="Request bodies received at once; more: 503 too_many_uploads."
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Bearer token of the admin endpoints; unset disables them."
    )
    threads: int | None = Field(
        default=None,
        gt=0,
        description="onnxruntime intra-op threads per prediction (None: CPU cores / inference_concurrency).",
    )
    inference_concurrency: int | None = Field(
        default=None,
        gt=0,
        description="Predictions run at the same time in one worker (None: one per CPU core).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed by CORS, comma-separated or a JSON list (http(s)://host[:port] or *); "
        "empty: off.",
    )
    upload_dir: Path | None = Field(default=None, description="When set, every raw upload is stored here.")
    log_level: str = Field(default="INFO", description="Log level of the service.")
    model_uri: str | None = Field(
        default=None,
        description="Registry URI models:/NAME@ALIAS the model came from; a reload re-resolves it.",
    )
    model_version: str | None = Field(
        default=None,
        description="NAME/VERSION that `vocalis serve` resolved model_uri to (set by the CLI, not by hand).",
    )
    model_poll_s: float | None = Field(
        default=None,
        description="With model_uri: seconds between looks at the alias; a move is reloaded. Unset/0: off.",
    )

    @field_validator("admin_token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, v: object) -> object:
        # VOCALIS_ADMIN_TOKEN="" must disable the admin endpoints, not make "" a valid token
        return None if v in ("", None) else v

    @field_validator("model_poll_s", mode="before")
    @classmethod
    def _poll_seconds(cls, v: object) -> object:
        # the registry's own reading of VOCALIS_MODEL_POLL_S: "" and 0 turn polling off
        from vocalis.registry.resolve import POLL_ENV, poll_interval

        return poll_interval({POLL_ENV: "" if v is None else str(v)})

    @field_validator(
        "upload_dir", "threads", "inference_concurrency", "model_uri", "model_version", mode="before"
    )
    @classmethod
    def _empty_dir_is_none(cls, v: object) -> object:
        return None if v in ("", None) else v

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, v: object) -> object:
        # a JSON list or a comma-separated string; each origin must be a scheme://host[:port] or "*"
        if isinstance(v, str):
            text = v.strip()
            if text.startswith("["):
                try:
                    v = json.loads(text)
                except ValueError:
                    raise ValueError(f"not a JSON list of origins: {text!r}") from None
            else:
                v = [part.strip() for part in text.split(",") if part.strip()]
        if not isinstance(v, list):
            raise ValueError("expected a list of origins")
        for origin in v:
            if not isinstance(origin, str) or not _ORIGIN.match(origin):
                raise ValueError(f"{origin!r} is not an origin like https://example.org or *")
        return v


def load_settings() -> Settings:
    """Settings from the environment; a bad value is one :class:`ConfigError` naming the variable."""
    from pydantic import ValidationError

    from vocalis.errors import ConfigError

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"VOCALIS_{'_'.join(str(p) for p in e['loc'][:1]).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"bad service setting: {problems}") from None
