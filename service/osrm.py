"""OSRM v1 HTTP API compatibility: parsing OSRM's URL syntax and shaping its responses.

Follows https://project-osrm.org/docs/v5.24.0/api/ : coordinates ``lon,lat;lon,lat`` (or
``polyline(...)`` / ``polyline6(...)``), option values separated by ``;``, numbers rounded
as OSRM rounds them (0.1 s, 0.1 m), ``geometry`` as polyline, polyline6 or GeoJSON.
"""

from __future__ import annotations

import base64
import math
import struct

import numpy as np
import shapely

from data_pipeline.road_graph import RoadGraph
from models.predictor import RouteResult, Waypoint
from service import polyline
from service.errors import ServiceError
from service.geometry import without_repeats

Coordinates = list[tuple[float, float]]
GEOMETRIES = ("polyline", "polyline6", "geojson")
OVERVIEWS = ("simplified", "full", "false")
SIMPLIFY_TOLERANCE_DEG = 5e-5  # ~5 m: what OSRM's overview=simplified keeps at city zoom


def invalid(code: str, message: str) -> ServiceError:
    return ServiceError(400, code, message)


def parse_coordinates(text: str, *, at_most: int) -> Coordinates:
    """``lon,lat;lon,lat`` or ``polyline(...)`` / ``polyline6(...)``, an optional ``.json``."""
    if text.endswith(".json"):
        text = text[: -len(".json")]
    for name, precision in (("polyline6(", 6), ("polyline(", 5)):
        if text.startswith(name) and text.endswith(")"):
            try:
                points = polyline.decode(text[len(name):-1], precision)
            except ValueError as exc:
                raise invalid("InvalidUrl", f"URL string malformed: {exc}") from None
            break
    else:
        points = []
        for index, pair in enumerate(text.split(";")):
            parts = pair.split(",")
            try:
                lon, lat = (float(part) for part in parts)
            except ValueError:
                raise invalid("InvalidUrl", f"URL string malformed: coordinate {index} "
                              f"{pair[:40]!r} is not 'lon,lat' with two numbers") from None
            points.append((lon, lat))
    for index, (lon, lat) in enumerate(points):
        if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180
                and -90 <= lat <= 90):
            raise invalid("InvalidValue", f"coordinate {index} ({lon}, {lat}) is out of range: "
                          "longitude must be in [-180, 180] and latitude in [-90, 90]")
    if len(points) < 1:
        raise invalid("InvalidUrl", "URL string malformed: no coordinates")
    if len(points) > at_most:
        raise invalid("TooBig", f"{len(points)} coordinates; at most {at_most} are allowed")
    return points


def parse_choice(name: str, value: str | None, choices: tuple[str, ...], default: str) -> str:
    if value is None:
        return default
    if value not in choices:
        raise invalid("InvalidOptions" if name != "geometries" else "InvalidValue",
                      f"{name}={value[:40]!r} is not allowed; use one of {', '.join(choices)}")
    return value


def parse_bool(name: str, value: str | None, default: bool) -> bool:
    if value is None:
        return default
    if value not in ("true", "false"):
        raise invalid("InvalidValue", f"{name} must be true or false, got {value[:40]!r}")
    return value == "true"


def parse_indices(name: str, value: str | None, count: int) -> list[int]:
    """``all`` or ``i;j;k`` indices into the coordinates."""
    if value is None or value == "all":
        return list(range(count))
    try:
        indices = [int(part) for part in value.split(";")]
    except ValueError:
        raise invalid("InvalidQuery", f"{name} must be 'all' or indices like 0;2;3, "
                      f"got {value[:40]!r}") from None
    for index in indices:
        if not 0 <= index < count:
            raise invalid("InvalidValue", f"{name} index {index} is out of range; there are "
                          f"{count} coordinates (0..{count - 1})")
    return indices


def hint(point: Waypoint) -> str:
    """Opaque per-waypoint hint, as OSRM returns (ignored when sent back)."""
    return base64.urlsafe_b64encode(struct.pack("<if", point.segment, point.fraction)).decode()


def waypoint(point: Waypoint) -> dict:
    return {"hint": hint(point), "distance": round(point.distance_m, 6), "name": "",
            "location": (round(point.lon, 6), round(point.lat, 6))}


def encode_geometry(coordinates: Coordinates, geometries: str):
    if geometries == "geojson":
        return {"type": "LineString",
                "coordinates": [(round(lon, 6), round(lat, 6)) for lon, lat in coordinates]}
    return polyline.encode(coordinates, 6 if geometries == "polyline6" else 5)


def overview_coordinates(coordinates: Coordinates, overview: str) -> Coordinates:
    if overview == "full" or len(coordinates) < 3:
        return coordinates
    line = shapely.LineString(coordinates).simplify(SIMPLIFY_TOLERANCE_DEG)
    return [tuple(point) for point in np.asarray(line.coords)] or coordinates


def _modifier(angle: float) -> str:
    """OSRM's maneuver modifier from a signed turn angle (positive = right)."""
    size = abs(angle)
    if size < 20:
        return "straight"
    if size > 170:
        return "uturn"
    side = "right" if angle > 0 else "left"
    if size < 60:
        return f"slight {side}"
    return f"sharp {side}" if size > 140 else side


def _bearing(value: float) -> int:
    return int(round(value)) % 360


def _step_coordinates(graph: RoadGraph, result: RouteResult,
                      groups: list[list[int]]) -> list[Coordinates]:
    """The route's own geometry (clipped at the snapped points) cut where each step begins:
    at the first point of the step's first segment, i.e. the junction it turns at."""
    coordinates = result.coordinates
    cuts = [0]
    for group in groups[1:]:
        piece = graph.segment_path(result.segments[group[0]])
        junction = (float(graph["path_lon"][piece.start]), float(graph["path_lat"][piece.start]))
        index = next((i for i in range(cuts[-1], len(coordinates))
                      if coordinates[i] == junction), cuts[-1])
        cuts.append(index)
    cuts.append(len(coordinates) - 1)
    return [without_repeats(coordinates[start:end + 1])
            for start, end in zip(cuts[:-1], cuts[1:], strict=True)]


def steps(graph: RoadGraph, result: RouteResult, geometries: str) -> list[dict]:
    """OSRM steps: depart, a turn wherever the road bends by >= 30 degrees at a junction,
    arrive. A step's distance is the metres driven on its segments (the first and last only
    in part), so the steps add up to the route; its geometry is the route's, cut at the
    junctions. ``name`` is "" (as OSRM gives for unnamed roads): the RoadGraph does not keep
    OSM street names."""
    bearing_in, bearing_out = graph["bearing_in_deg"], graph["bearing_out_deg"]
    segments, times = result.segments, result.segment_times_s
    destination = (result.destination.lon, result.destination.lat)
    groups: list[list[int]] = []  # indices into segments
    angles: list[float] = []
    for index, segment in enumerate(segments):
        if index == 0:
            groups.append([index])
            continue
        angle = (float(bearing_in[segment]) - float(bearing_out[segments[index - 1]]) + 540) % 360
        angle -= 180
        if abs(angle) >= 30:
            groups.append([index])
            angles.append(angle)
        else:
            groups[-1].append(index)
    pieces = _step_coordinates(graph, result, groups)
    out: list[dict] = []
    for number, group in enumerate(groups):
        coordinates = pieces[number]
        first = segments[group[0]]
        location = coordinates[0]
        previous = segments[groups[number - 1][-1]] if number else None
        before = _bearing(bearing_out[previous]) if previous is not None else 0
        after = _bearing(bearing_in[first])
        maneuver = {"location": (round(location[0], 6), round(location[1], 6)),
                    "bearing_before": before, "bearing_after": after,
                    "type": "depart" if number == 0 else "turn"}
        if number:
            maneuver["modifier"] = _modifier(angles[number - 1])
        duration = sum(times[i] for i in group)
        distance = sum(result.segment_distances_m[i] for i in group)
        intersection = {"location": maneuver["location"], "bearings": [after],
                        "entry": [True], "out": 0}
        if number:
            intersection = {"location": maneuver["location"],
                            "bearings": [(before + 180) % 360, after], "entry": [False, True],
                            "in": 0, "out": 1}
        out.append({"geometry": encode_geometry(coordinates, geometries), "maneuver": maneuver,
                    "mode": "driving", "driving_side": "right", "name": "",
                    "intersections": [intersection], "weight": round(duration, 1),
                    "duration": round(duration, 1), "distance": round(distance, 1)})
    end = (round(destination[0], 6), round(destination[1], 6))
    arrive_bearing = _bearing(bearing_out[segments[-1]]) if segments else 0
    out.append({"geometry": encode_geometry([destination, destination], geometries),
                "maneuver": {"location": end, "bearing_before": arrive_bearing,
                             "bearing_after": 0, "type": "arrive"},
                "mode": "driving", "driving_side": "right", "name": "",
                "intersections": [{"location": end, "bearings": [(arrive_bearing + 180) % 360],
                                   "entry": [True], "in": 0}],
                "weight": 0.0, "duration": 0.0, "distance": 0.0})
    return out
