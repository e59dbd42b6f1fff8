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
                    "'freeflow-turns' = free-flow on the turn graph, 'live-scalar' = the "
                    "live traffic baseline (observed speeds, free flow elsewhere)"
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
    max_matrix_cells: int = Field(default=10_000, ge=1, le=100_000_000,
                                  description="most origins x destinations per matrix (the "
                                              "work one request may ask for)")
    max_matrix_work_cells: int = Field(default=40_000, ge=1, le=1_000_000_000,
                                       description="matrix cells one process computes at "
                                                   "once, over all requests; more wait "
                                                   "NARETA_QUEUE_TIMEOUT_S, then 503")
    max_in_flight: int = Field(default=64, ge=1, le=100_000,
                               description="requests one process works on at once; more are "
                                           "answered 503 with Retry-After (load shedding)")
    max_queued: int = Field(default=1024, ge=0, le=1_000_000,
                            description="requests that may wait for an in-flight slot")
    queue_timeout_s: float = Field(default=0.5, ge=0, le=60,
                                   description="how long a request may wait for an in-flight "
                                               "slot before it is shed (0: shed at once)")
    retry_after_s: int = Field(default=1, ge=1, le=3600,
                               description="Retry-After of a shed (503) request")
    header_timeout_s: float = Field(default=10.0, gt=0, le=3600,
                                    description="time a client has to send a request's head "
                                                "(else 408 and the connection is closed)")
    body_timeout_s: float = Field(default=15.0, gt=0, le=3600,
                                  description="time a client has to send a request's body "
                                              "(else 408 and the connection is closed)")
    keep_alive_s: float = Field(default=5.0, gt=0, le=3600,
                                description="an idle keep-alive connection is closed after this")
    cache_runs: int = Field(default=512, ge=1, description="model runs kept in the LRU")
    cache_mb: float = Field(default=8.0, gt=0, le=65_536,
                            description="memory the LRU of model runs may hold, in MB")

    traffic_path: Path | None = Field(
        default=None, description="traffic feed file or directory loaded at start-up (models "
                                  "that take live traffic only)")
    traffic_max_age_s: float = Field(
        default=1800.0, gt=0, le=7 * 86_400,
        description="observations older than this (before the departure) are not used; "
                    "with none recent enough answers fall back to the historical model")
    traffic_reload_s: float = Field(
        default=30.0, ge=0, description="how often the traffic path is checked for changes "
                                        "(reloaded when its files change); 0 = never")
    max_traffic_rows: int = Field(default=100_000, ge=1,
                                  description="most observation rows per POST /v1/traffic")
    max_traffic_body_bytes: int = Field(default=32 * 1_048_576, ge=1024,
                                        description="body-size limit of POST /v1/traffic")

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

    @field_validator("traffic_path")
    @classmethod
    def _traffic_path_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.exists():
            raise ValueError(f"{value}: no such traffic feed file or directory")
        return value

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
