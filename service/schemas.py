"""HTTP request and response bodies, in Request / Response families.

Coordinates are WGS84 degrees. Every error the service returns is an
:class:`ErrorResponse` (the same ``{code, message}`` shape OSRM uses).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False,
                                   description="WGS84 longitude, degrees in [-180, 180]")]
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False,
                                  description="WGS84 latitude, degrees in [-90, 90]")]
#: The earliest and latest departure times accepted (epoch seconds).
EPOCH_MIN, EPOCH_MAX = 0.0, 4_102_444_800.0  # 1970-01-01 .. 2100-01-01
DEPARTURE_TIME_HELP = (
    "ISO-8601 date-time (local time of the city when no offset is given) or epoch seconds, "
    "between 1970-01-01 and 2100-01-01; omitted = the model's default (free flow)"
)


def parse_departure_time(value: Any) -> dt.datetime | None:
    """ISO-8601 text or epoch seconds -> datetime; ValueError saying what is allowed."""
    if value is None or isinstance(value, dt.datetime):
        return value
    if isinstance(value, bool):
        raise ValueError(f"departure_time must be {DEPARTURE_TIME_HELP}")
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds) or not EPOCH_MIN <= seconds <= EPOCH_MAX:
            raise ValueError(f"departure_time {value} is out of range; {DEPARTURE_TIME_HELP}")
        return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    if isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            pass
        else:
            return parse_departure_time(seconds)
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"departure_time {value!r} is not valid; it must be "
                             f"{DEPARTURE_TIME_HELP}") from None
        if not 1970 <= parsed.year < 2100:
            raise ValueError(f"departure_time {value!r} is out of range; {DEPARTURE_TIME_HELP}")
        return parsed
    raise ValueError(f"departure_time must be {DEPARTURE_TIME_HELP}")


DepartureTime = Annotated[
    dt.datetime | None,
    BeforeValidator(parse_departure_time),
    WithJsonSchema({
        "anyOf": [{"type": "string", "format": "date-time"},
                  {"type": "number", "minimum": EPOCH_MIN, "maximum": EPOCH_MAX},
                  {"type": "null"}],
        "description": DEPARTURE_TIME_HELP,
    }),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------- shared parts
class Point(_Request):
    """A query location."""

    lon: Longitude
    lat: Latitude


class WaypointResponse(BaseModel):
    """A query point snapped onto the road network."""

    location: tuple[float, float] = Field(description="snapped [lon, lat]")
    distance_m: float = Field(description="metres from the query point to the road")


class LineString(BaseModel):
    type: Literal["LineString"] = "LineString"
    coordinates: list[tuple[float, float]]


class MultiLineString(BaseModel):
    type: Literal["MultiLineString"] = "MultiLineString"
    coordinates: list[list[tuple[float, float]]]


class Polygon(BaseModel):
    type: Literal["Polygon"] = "Polygon"
    coordinates: list[list[tuple[float, float]]]


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every error: OSRM's ``{code, message}`` (``InvalidQuery``, ``InvalidValue``,
    ``InvalidUrl``, ``NoSegment``, ``NoRoute``, ``TooBig``, ``Unauthorized``, ...)."""

    code: str
    message: str
    detail: list[ErrorDetail] | None = None


# ---------------------------------------------------------------------- native API
class EtaRequest(_Request):
    origin: Point
    destination: Point
    departure_time: DepartureTime = None


class EtaResponse(BaseModel):
    eta_s: float
    distance_m: float
    origin: WaypointResponse
    destination: WaypointResponse
    departure_time: dt.datetime | None
    model: str


class RouteRequest(EtaRequest):
    pass


class RouteResponse(EtaResponse):
    geometry: LineString
    segment_ids: list[int]
    segment_times_s: list[float] = Field(description="per segment; first/last are partial")
    fallback_used: bool
    fallback_reason: str | None


class MatrixRequest(_Request):
    origins: list[Point] = Field(min_length=1, max_length=10_000)
    destinations: list[Point] | None = Field(
        default=None, min_length=1, max_length=10_000, description="omitted = the origins")
    departure_time: DepartureTime = None


class MatrixResponse(BaseModel):
    durations_s: list[list[float | None]] = Field(description="[origin][destination]; "
                                                  "null where no route")
    distances_m: list[list[float | None]]
    origins: list[WaypointResponse]
    destinations: list[WaypointResponse]
    model: str


class IsochroneRequest(_Request):
    origin: Point
    max_seconds: float = Field(gt=0, le=86_400, allow_inf_nan=False,
                               description="time budget (the server's limit may be lower)")
    departure_time: DepartureTime = None
    area: Literal["concave", "convex", "none"] = Field(
        default="concave", description="hull polygon drawn around the reachable road")


class GeometryFeature(BaseModel):
    type: Literal["Feature"] = "Feature"
    geometry: MultiLineString | Polygon
    properties: dict[str, str | float | int | None]


class IsochroneResponse(BaseModel):
    """A GeoJSON FeatureCollection: the reachable road pieces (``kind: "roads"``) and,
    unless ``area`` is ``none``, a hull polygon around them (``kind: "area"``)."""

    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[GeometryFeature]
    origin: WaypointResponse
    max_seconds: float
    reachable_nodes: int
    model: str


# ---------------------------------------------------------------------- operations
class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    ready: bool
    model: str | None = None
    model_identity: str | None = None
    graph_identity: str | None = None
    nodes: int | None = None
    segments: int | None = None


# ---------------------------------------------------------------------- OSRM v1
class OsrmWaypoint(BaseModel):
    hint: str | None = Field(default=None, description="absent with generate_hints=false")
    distance: float | None = Field(description="metres from the query point to the road "
                                   "(null only for a table point off the map)")
    name: str
    location: tuple[float, float]


class OsrmNearestWaypoint(OsrmWaypoint):
    nodes: tuple[int, int] = Field(description="OSM ids of the road piece's two nodes")


class OsrmManeuver(BaseModel):
    location: tuple[float, float]
    bearing_before: int
    bearing_after: int
    type: str
    modifier: str | None = None


class OsrmIntersection(BaseModel):
    location: tuple[float, float]
    bearings: list[int]
    entry: list[bool]
    in_: int | None = Field(default=None, alias="in", serialization_alias="in")
    out: int | None = None

    model_config = ConfigDict(populate_by_name=True)


class OsrmStep(BaseModel):
    geometry: str | LineString
    maneuver: OsrmManeuver
    mode: Literal["driving"] = "driving"
    driving_side: Literal["right", "left"] = "right"
    name: str
    intersections: list[OsrmIntersection]
    weight: float
    duration: float
    distance: float


class OsrmAnnotation(BaseModel):
    """One value per road segment driven (OSRM: per pair of geometry points)."""

    duration: list[float] | None = None
    distance: list[float] | None = None
    speed: list[float] | None = None
    weight: list[float] | None = None


class OsrmLeg(BaseModel):
    annotation: OsrmAnnotation | None = None
    steps: list[OsrmStep]
    summary: str
    weight: float
    duration: float
    distance: float


class OsrmRoute(BaseModel):
    geometry: str | LineString | None = None
    legs: list[OsrmLeg]
    weight_name: str
    weight: float
    duration: float
    distance: float


class OsrmRouteResponse(BaseModel):
    code: Literal["Ok"] = "Ok"
    routes: list[OsrmRoute]
    waypoints: list[OsrmWaypoint] | None = Field(default=None,
                                                 description="absent with skip_waypoints")


class OsrmTableResponse(BaseModel):
    code: Literal["Ok"] = "Ok"
    durations: list[list[float | None]] | None = Field(
        default=None, description="[source][destination] seconds; null where no route")
    distances: list[list[float | None]] | None = None
    fallback_speed_cells: list[tuple[int, int]] | None = Field(
        default=None, description="with fallback_speed: the [row, column] cells estimated")
    sources: list[OsrmWaypoint] | None = None
    destinations: list[OsrmWaypoint] | None = None


class OsrmNearestResponse(BaseModel):
    code: Literal["Ok"] = "Ok"
    waypoints: list[OsrmNearestWaypoint] | None = None
