"""The service's one configuration object, read from the environment (``NARETA_*``).

Built by the caller (``nareta serve`` or a test), never at import, and validated at once:
a missing graph directory or a nonsensical limit stops the server before it listens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Service settings; every field reads ``NARETA_<FIELD>`` from the environment."""

    model_config = SettingsConfigDict(env_prefix="NARETA_", extra="ignore", frozen=True)

    graph_dir: Path = Field(description="RoadGraph artifact directory (`nareta ingest` output)")
    model_dir: str | None = Field(
        default=None, description="travel-time model artifact; unset or 'freeflow' = free-flow, "
                    "'freeflow-turns' = free-flow on the turn graph"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64,
                         description="server processes, each loading the model once")

    max_matrix_size: int = Field(default=100, ge=1, le=10_000,
                                 description="most origins and most destinations per matrix")
    max_route_waypoints: int = Field(default=25, ge=2, le=1000)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_snap_distance_m: float = Field(default=250.0, gt=0, le=100_000)
    max_isochrone_s: float = Field(default=3600.0, gt=0, le=86_400)
    cache_runs: int = Field(default=512, ge=1, description="model runs kept in the LRU")
    cache_mb: float = Field(default=8.0, gt=0, le=65_536,
                            description="memory the LRU of model runs may hold, in MB")

    api_key: SecretStr | None = Field(default=None, description="required on query routes")
    api_key_header: str = "X-API-Key"
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    log_level: str = "info"
    access_log: bool = True

    @field_validator("graph_dir")
    @classmethod
    def _graph_dir_exists(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"{value} is not a directory; build one with `nareta ingest`")
        return value

    @field_validator("model_dir")
    @classmethod
    def _model_dir_exists(cls, value: str | None) -> str | None:
        from nareta.defaults import resolve_model
        from nareta.errors import NaretaError

        if value in (None, ""):
            return None
        try:
            return resolve_model(value)
        except NaretaError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        levels = ("critical", "error", "warning", "info", "debug")
        if value.lower() not in levels:
            raise ValueError(f"log_level must be one of {levels}")
        return value.lower()
