"""``Annotated`` dependencies: the settings and the Predictor come from the app's state,
put there by the lifespan; nothing is a module-level global."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from models.inference.predictor import Predictor
from service.config import Settings
from service.errors import ServiceError


# ``async``: FastAPI runs a plain ``def`` dependency in its thread pool, a hand-off that
# costs more than these lookups (and than a hierarchy query)
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_predictor(request: Request) -> Predictor:
    predictor = getattr(request.app.state, "predictor", None)
    if predictor is None or not predictor.ready:
        raise ServiceError(503, "NotReady", "the model is still loading; retry shortly")
    return predictor


SettingsDep = Annotated[Settings, Depends(get_settings)]
PredictorDep = Annotated[Predictor, Depends(get_predictor)]


def api_key_check(settings: Settings) -> Callable:
    """A dependency that requires ``settings.api_key`` in ``settings.api_key_header``."""
    header = APIKeyHeader(name=settings.api_key_header, auto_error=False,
                          description="API key (set NARETA_API_KEY on the server)")
    expected = settings.api_key.get_secret_value().encode() if settings.api_key else b""

    # A default, not Annotated: the annotation is a string (PEP 563) and `header` is local.
    async def check(key: str | None = Security(header)) -> None:
        if not secrets.compare_digest((key or "").encode(), expected):
            raise ServiceError(401, "Unauthorized",
                               f"send a valid API key in the {settings.api_key_header} header")

    return check
