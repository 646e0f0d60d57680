"""The served model: its card, and the admin route that reloads it."""

from __future__ import annotations

import hmac
import logging
import re
from pathlib import PurePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.encoders import jsonable_encoder
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vocalis.serving.api_errors import ApiError
from vocalis.serving.prediction import card_dict
from vocalis.serving.schemas import ModelCard, ReloadResult
from vocalis.serving.state import LoadedPredictor, State

log = logging.getLogger(__name__)

router = APIRouter()

#: reads ``Authorization: Bearer <token>``; missing or another scheme gives None (we answer 401 ourselves)
_bearer = HTTPBearer(auto_error=False, description="VOCALIS_ADMIN_TOKEN")


async def require_admin(
    state: State, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Dependency of the admin routes: 404 when no token is configured, 401 without one, 403 when wrong."""
    token = state.settings.admin_token
    if token is None:  # admin disabled: the endpoint does not exist
        raise ApiError(404, "not_found", "admin endpoints are disabled (VOCALIS_ADMIN_TOKEN is not set)")
    if credentials is None or not credentials.credentials.strip():
        raise ApiError(401, "unauthorized", "admin endpoints need 'Authorization: Bearer <token>'")
    given = credentials.credentials.strip().encode()
    if not hmac.compare_digest(given, token.get_secret_value().encode()):
        raise ApiError(403, "forbidden", "wrong admin token")


@router.get("/v1/model", response_model=ModelCard, tags=["model"])
async def model_card(state: State, predictor: LoadedPredictor) -> dict[str, Any]:
    """The served model's card: classes, sample rate, window, metrics, provenance."""
    card = card_dict(predictor)
    card.setdefault("version", predictor.version)
    card.setdefault("classes", predictor.classes)
    card["loaded_at"] = state.loaded_at.isoformat() if state.loaded_at else None
    card["model_label"] = state.label_of(predictor)
    if state.registry is not None:
        card["registry"] = state.registry.describe()
    result: dict[str, Any] = _without_server_paths(jsonable_encoder(card))
    return result


def _without_server_paths(value: Any) -> Any:
    """The card as clients see it: absolute paths (where the run, checkpoint or cache lay on the machine
    that made the artifact) reduced to their last part, which still names them without the layout."""
    if isinstance(value, dict):
        return {k: _without_server_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_server_paths(v) for v in value]
    if isinstance(value, str) and (value.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", value)):
        return PurePath(value.replace("\\", "/")).name
    return value


@router.post(
    "/v1/admin/reload", response_model=ReloadResult, tags=["admin"], dependencies=[Depends(require_admin)]
)
async def reload_model(state: State) -> ReloadResult:
    """Load the model again and swap it in atomically; a ``models:/`` URI is resolved again first.

    Requests already running finish on the model they started with; new ones get the new model. A
    failed load keeps the old model (409 ``reload_failed``).
    """
    old = state.predictor
    old_version = old.version if old is not None else None
    previous_label, label = await state.reload()
    new = state.predictor
    assert new is not None
    return ReloadResult(
        status="reloaded",
        previous_version=old_version,
        model_version=new.version,
        previous_label=previous_label,
        model_label=label,
    )
