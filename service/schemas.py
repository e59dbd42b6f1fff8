"""HTTP request and response bodies, in Request / Response families.

Coordinates are WGS84 degrees. Every error the service returns is an
:class:`ErrorResponse` (the same ``{code, message}`` shape OSRM uses).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from nareta.timeparse import (
    DEPARTURE_TIME_HELP,
    EPOCH_MAX_S,
    EPOCH_MIN_S,
    parse_departure_time,
)

Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False,
                                   description="WGS84 longitude, degrees in [-180, 180]")]
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False,
                                  description="WGS84 latitude, degrees in [-90, 90]")]
#: What an omitted departure time means (``models.eta.model.DEFAULT_DEPARTURE``; a test keeps
#: the two equal).
DEFAULT_DEPARTURE_HELP = (
    "omitted = 2026-11-18T12:00 local time of the city (a weekday at noon: the time the "
    "learned ETA model assumes; free-flow models give the same answer at any time)"
)


DepartureTime = Annotated[
    dt.datetime | None,
    BeforeValidator(parse_departure_time),  # the one parser (nareta.timeparse)
    WithJsonSchema({
        "anyOf": [{"type": "string", "format": "date-time"},
                  {"type": "number", "minimum": EPOCH_MIN_S, "exclusiveMaximum": EPOCH_MAX_S},
                  {"type": "null"}],
        "description": f"{DEPARTURE_TIME_HELP}; {DEFAULT_DEPARTURE_HELP}",
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


class FeedReportResponse(BaseModel):
    """What happened to a traffic feed's rows."""

    rows: int = Field(description="rows received")
    used: int = Field(description="rows mapped onto the road graph and used")
    rejected: dict[str, int] = Field(description="rows left out, counted by reason")


class ErrorResponse(BaseModel):
    """Every error: OSRM's ``{code, message}`` (``InvalidQuery``, ``InvalidValue``,
    ``InvalidUrl``, ``NoSegment``, ``NoRoute``, ``TooBig``, ``Unauthorized``, ...)."""

    code: str
    message: str
    detail: list[ErrorDetail] | None = None
    report: FeedReportResponse | None = Field(
        default=None, description="POST /v1/traffic: the rows' counts by reason")


class TrafficStatus(BaseModel):
    """Which traffic an answer used (models that take live traffic only)."""

    live: bool = Field(description="true: the live snapshot; false: the historical model")
    reason: str = Field(description="'live', or why the answer fell back to the historical "
                                    "model (no feed loaded, or none recent enough)")
    as_of: dt.datetime | None = Field(
        description="local time at which the newest observation used ended")
    snapshot: str | None = Field(description="key of the snapshot used")


TRAFFIC_AS_OF_HELP = ("local time (ISO-8601) of the newest traffic observation the answer "
                      "used; null: no live traffic (historical model or a model without it)")


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
    departure_time: dt.datetime | None = Field(
        description=f"as given in the request (null when omitted: {DEFAULT_DEPARTURE_HELP})")
    model: str
    traffic_as_of: dt.datetime | None = Field(default=None, description=TRAFFIC_AS_OF_HELP)
    traffic: TrafficStatus | None = Field(
        default=None, description="null when the model takes no live traffic")


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
    traffic_as_of: dt.datetime | None = Field(default=None, description=TRAFFIC_AS_OF_HELP)
    traffic: TrafficStatus | None = Field(
        default=None, description="null when the model takes no live traffic")


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
    traffic_as_of: dt.datetime | None = Field(default=None, description=TRAFFIC_AS_OF_HELP)
    traffic: TrafficStatus | None = Field(
        default=None, description="null when the model takes no live traffic")


# ---------------------------------------------------------------------- traffic


class TrafficRow(BaseModel):
    """One observation: the feed's columns (other keys are ignored, as in feed files; bad
    values are counted by reason, not refused)."""

    model_config = ConfigDict(extra="ignore")

    window_start: str | float | None = Field(
        default=None, description="ISO-8601 local time (or with an offset) or epoch seconds")
    osm_way_id: str | int | float | None = None
    osm_start_node_id: str | int | float | None = None
    osm_end_node_id: str | int | float | None = None
    speed_kph_mean: str | float | None = Field(default=None,
                                               description="km/h, 0 < speed <= 250")
    sample_count: str | int | float | None = None


class TrafficRequest(_Request):
    rows: list[TrafficRow] = Field(description="observations; at most the server's "
                                               "NARETA_MAX_TRAFFIC_ROWS")
    now: DepartureTime = Field(
        default=None, description="the feed's 'now' (ISO-8601 or epoch s): windows starting "
        "later are rejected; omitted = the server's wall clock (+60 s), for real-time feeds. "
        "A replayed feed sends its replay time.")
    mode: Literal["replace", "merge"] = Field(
        default="replace", description="replace the current snapshot with these rows, or "
        "merge them into it (newer rows win per window and segment; windows older than the "
        "max age + 15 min are dropped)")


class TrafficSnapshotResponse(BaseModel):
    key: str = Field(description="content hash of the snapshot (cached runs are keyed by it)")
    as_of: dt.datetime | None = Field(description="local time at which the newest window ended")
    first_window: dt.datetime | None
    window_s: float
    rows: int = Field(description="(window, segment) observations")
    windows: int
    observed_segments: int
    source: str | None = Field(description="'file PATH' or 'POST /v1/traffic'")
    loaded_utc: str | None
    report: FeedReportResponse | None


class TrafficResponse(BaseModel):
    model_uses_traffic: bool
    max_age_s: float = Field(description="older observations are ignored (historical model)")
    snapshot: TrafficSnapshotResponse | None
    now: TrafficStatus | None = Field(
        description="what a query without a departure time uses now")


class TrafficPostResponse(TrafficResponse):
    report: FeedReportResponse
    mode: Literal["replace", "merge"]
    feed_now: dt.datetime = Field(description="the 'now' windows were checked against")


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
