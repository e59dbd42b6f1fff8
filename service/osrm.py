"""OSRM v1 HTTP API compatibility: parsing OSRM's URL syntax and shaping its responses.

Follows https://project-osrm.org/docs/v5.24.0/api/ : coordinates ``lon,lat;lon,lat`` (or
``polyline(...)`` / ``polyline6(...)``), option values separated by ``;``, numbers rounded
as OSRM rounds them (0.1 s, 0.1 m), ``geometry`` as polyline, polyline6 or GeoJSON.

Options are checked as osrm-routed checks them: an option no service takes is 400
``InvalidQuery``; an OSRM option nareta does not implement (``bearings``, ``approaches``,
``exclude``, ``snapping=any``, ``continue_straight=true`` with via points, ``waypoints``
other than all of them, ``nodes`` / ``datasources`` annotations) is 400 ``InvalidOptions``
rather than silently ignored. ``hints`` nareta issued are accepted (OSRM clients such as
Leaflet Routing Machine send them back): a hint only spares OSRM the snapping, and nareta
re-snaps the coordinate, which gives the waypoint the hint names; a hint nareta did not
issue is ``InvalidOptions``.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Sequence

import numpy as np
import shapely
from osmnx.distance import great_circle
from starlette.datastructures import QueryParams
from starlette.responses import Response

from data_pipeline.ingest import EARTH_RADIUS_M
from data_pipeline.road_graph import RoadGraph
from models.inference.predictor import RouteResult, Waypoint
from service import polyline
from service.errors import ServiceError
from service.geometry import without_repeats

Coordinates = list[tuple[float, float]]
GEOMETRIES = ("polyline", "polyline6", "geojson")
OVERVIEWS = ("simplified", "full", "false")
SIMPLIFY_TOLERANCE_DEG = 5e-5  # ~5 m: what OSRM's overview=simplified keeps at city zoom

#: Options of every OSRM service, then of each service (OSRM v5 API).
GENERAL_OPTIONS = ("bearings", "radiuses", "generate_hints", "hints", "approaches", "exclude",
                   "snapping", "skip_waypoints")
SERVICE_OPTIONS = {
    "route": (*GENERAL_OPTIONS, "alternatives", "steps", "annotations", "geometries",
              "overview", "continue_straight", "waypoints"),
    "table": (*GENERAL_OPTIONS, "sources", "destinations", "annotations", "fallback_speed",
              "fallback_coordinate", "scale_factor"),
    "nearest": (*GENERAL_OPTIONS, "number"),
}
#: What each option means here (the OpenAPI description of the query parameters).
OPTION_HELP = {
    "bearings": "not supported: only empty entries (`;`) are accepted",
    "radiuses": "snap limit per coordinate in metres, or `unlimited` / empty (the default: "
                "no limit, as OSRM)",
    "generate_hints": "true (default) or false: whether waypoints carry a `hint`",
    "hints": "hints from an earlier nareta answer (or empty entries): accepted, the "
             "coordinate is snapped again",
    "approaches": "`unrestricted` or empty per coordinate (`curb` is not supported)",
    "exclude": "not supported: leave it out",
    "snapping": "`default` (`any` is not supported)",
    "skip_waypoints": "true or false (default): leave the waypoints out of the answer",
    "alternatives": "true, false or a number; nareta answers one route",
    "steps": "true or false (default): turn-by-turn steps",
    "annotations": "route: true, false or a list of duration, distance, speed, weight (one "
                   "value per road segment); table: duration (default), distance or both",
    "geometries": "polyline (default), polyline6 or geojson",
    "overview": "simplified (default), full or false",
    "continue_straight": "default, false, or true with two coordinates only",
    "waypoints": "all coordinate indices (`0;1;...`) or leave it out",
    "sources": "`all` (default) or coordinate indices `0;2`",
    "destinations": "`all` (default) or coordinate indices `1;3`",
    "fallback_speed": "metres per second > 0: cells with no route get the crow-fly distance "
                      "at this speed",
    "fallback_coordinate": "input (default) or snapped: where fallback distances start",
    "scale_factor": "number > 0 multiplying every duration",
    "number": "how many nearest roads, 1 to 100 (default 1)",
}


def openapi_parameters(service: str) -> dict:
    """``openapi_extra`` documenting a service's options: the handlers read them from the
    query string themselves (parsing about twenty declared parameters per request cost
    more than the free-flow query's search)."""
    return {"parameters": [
        {"name": name, "in": "query", "required": False, "description": OPTION_HELP[name],
         "schema": {"type": "string"}} for name in SERVICE_OPTIONS[service]]}


#: Route annotations nareta gives (``annotations=true`` gives these), one value per road
#: segment driven.
ROUTE_ANNOTATIONS = ("duration", "distance", "speed", "weight")
OSRM_ROUTE_ANNOTATIONS = (*ROUTE_ANNOTATIONS, "nodes", "datasources")


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


def unsupported(name: str, why: str) -> ServiceError:
    return invalid("InvalidOptions", f"{name} is not supported by nareta ({why}); "
                   "leave it out")


def check_options(params: QueryParams, service: str, count: int) -> None:
    """Reject options the service does not take (``InvalidQuery``), options given twice,
    and OSRM options nareta does not implement (``InvalidOptions``)."""
    allowed = SERVICE_OPTIONS[service]
    for name in params:
        if name not in allowed:
            raise invalid("InvalidQuery", f"query string malformed: {name[:40]!r} is not an "
                          f"option of the {service} service; its options are "
                          f"{', '.join(allowed)}")
        if len(params.getlist(name)) > 1:
            raise invalid("InvalidQuery", f"query string malformed: {name} is given twice")
    if any(split_list(params.get("bearings", ""))):
        raise unsupported("bearings", "snapping ignores headings")
    if any(item not in ("", "unrestricted") for item in split_list(params.get("approaches",
                                                                               ""))):
        raise unsupported("approaches=curb", "a stop may be on either side of the road")
    if params.get("exclude"):
        raise unsupported("exclude", "every road class is always allowed")
    snapping = params.get("snapping")
    if snapping not in (None, "default"):
        if snapping == "any":
            raise unsupported("snapping=any", "points snap to the routable graph only")
        raise invalid("InvalidValue", f"snapping must be default or any, got {snapping[:40]!r}")
    continue_straight = params.get("continue_straight")
    if continue_straight not in (None, "true", "false", "default"):
        raise invalid("InvalidValue", "continue_straight must be true, false or default, got "
                      f"{continue_straight[:40]!r}")
    if continue_straight == "true" and count > 2:
        raise unsupported("continue_straight=true", "each leg is routed on its own, so a "
                          "route may turn around at a via point")
    waypoints = params.get("waypoints")
    if waypoints is not None and waypoints != ";".join(str(i) for i in range(count)):
        raise unsupported("waypoints", "every coordinate is a waypoint; give all of "
                          f"0..{count - 1} or leave it out")


def check_hints(value: str | None, count: int, segments: int) -> None:
    """``hints``: one entry per coordinate, each empty or a hint nareta issued for this
    graph (see :func:`hint`)."""
    for index, item in enumerate(parse_per_coordinate("hints", value, count)):
        if not item:
            continue
        try:
            segment, fraction = struct.unpack("<if", base64.urlsafe_b64decode(item))
        except (ValueError, struct.error):
            segment, fraction = -1, math.nan
        if not (0 <= segment < segments and 0.0 <= fraction <= 1.0):
            raise invalid("InvalidOptions", f"hint {index} {item[:40]!r} was not issued by "
                          "this nareta graph; send the hints of an earlier answer or leave "
                          "them out")


def split_list(value: str) -> list[str]:
    """OSRM's ``;``-separated per-coordinate lists."""
    return value.split(";") if value else []


def parse_per_coordinate(name: str, value: str | None, count: int) -> list[str]:
    """A ``;``-separated list with one entry per coordinate (or ``count`` empty entries)."""
    if value is None:
        return [""] * count
    items = value.split(";")
    if len(items) != count:
        raise invalid("InvalidOptions", f"{name} has {len(items)} entries for {count} "
                      "coordinates; give one per coordinate (empty for the default)")
    return items


def parse_radiuses(value: str | None, count: int) -> list[float]:
    """Snap limits in metres per coordinate: a number >= 0, or ``unlimited`` / empty (no
    limit: a point snaps to the nearest road however far, as in OSRM)."""
    radii = []
    for index, item in enumerate(parse_per_coordinate("radiuses", value, count)):
        if item in ("", "unlimited"):
            radii.append(math.inf)
            continue
        try:
            radius = float(item)
        except ValueError:
            radius = math.nan
        if not (math.isfinite(radius) and radius >= 0):
            raise invalid("InvalidQuery", f"radiuses entry {index} {item[:40]!r} must be a "
                          "number of metres >= 0 or 'unlimited'")
        radii.append(radius)
    return radii


def parse_positive(name: str, value: str | None, *, at_most: float = math.inf
                   ) -> float | None:
    """An optional positive finite number (OSRM's fallback_speed, scale_factor)."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise invalid("InvalidQuery", f"{name} must be a number, got {value[:40]!r}") from None
    if not (math.isfinite(number) and 0 < number <= at_most):
        raise invalid("InvalidOptions", f"{name} must be > 0 (and finite), got {value[:40]!r}")
    return number


def parse_route_annotations(value: str | None) -> tuple[str, ...]:
    """``true`` / ``false`` or a list of duration, distance, speed, weight (nodes and
    datasources are OSRM's but not nareta's)."""
    if value is None or value == "false":
        return ()
    if value == "true":
        return ROUTE_ANNOTATIONS
    items = value.split(",")
    for item in items:
        if item not in OSRM_ROUTE_ANNOTATIONS:
            raise invalid("InvalidValue", f"annotations must be true, false or a list of "
                          f"{', '.join(OSRM_ROUTE_ANNOTATIONS)}; got {value[:40]!r}")
        if item not in ROUTE_ANNOTATIONS:
            raise unsupported(f"annotations={item}", "the graph keeps no per-node data "
                              "sources" if item == "datasources" else
                              "annotations are per road segment, not per OSM node")
    return tuple(dict.fromkeys(items))


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
    """Opaque per-waypoint hint, as OSRM returns; accepted back in ``hints``."""
    return base64.urlsafe_b64encode(struct.pack("<if", point.segment, point.fraction)).decode()


def waypoint(point: Waypoint, *, hints: bool = True,
             query: tuple[float, float] | None = None, graph: RoadGraph | None = None) -> dict:
    """OSRM's waypoint. A point with no road within its radius (``segment < 0``, table
    only) reports the nearest road and its distance (beyond the radius), or the query
    point itself when it lies off the map."""
    if not math.isfinite(point.distance_m) and query is not None:
        return {"distance": None, "name": "", "location": (round(query[0], 6),
                                                            round(query[1], 6))}
    body = {"hint": hint(point)} if hints and point.segment >= 0 else {}
    name = graph.street_name(point.segment) if graph is not None and point.segment >= 0 else ""
    body.update({"distance": round(point.distance_m, 6), "name": name,
                 "location": (round(point.lon, 6), round(point.lat, 6))})
    return body


def crow_fly_m(origins: Sequence[tuple[float, float]],
               destinations: Sequence[tuple[float, float]]) -> np.ndarray:
    """``[O, D]`` great-circle metres between (lon, lat) points."""
    a = np.asarray(origins, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(destinations, dtype=np.float64).reshape(-1, 2)
    return np.asarray(great_circle(a[:, None, 1], a[:, None, 0], b[None, :, 1], b[None, :, 0],
                                   earth_radius=EARTH_RADIUS_M), dtype=np.float64)


class RawJson(str):
    """Text already encoded as JSON, spliced into a body by :func:`json_response`."""


def matrix_json(matrix: np.ndarray) -> RawJson:
    """A ``[rows, columns]`` matrix as JSON, each value rounded to 0.1 (as OSRM rounds),
    ``null`` where not finite: the text ``json.dumps`` writes for ``round(value, 1)``
    (printf's ``%.1f`` rounds the same binary value the same way, and the shortest repr of
    a one-decimal double is that text below 1e16), about five times faster: a 100x100 table
    spent more time here than in its search."""
    finite = np.isfinite(matrix)
    if (np.abs(matrix[finite]) >= 1e15).any():
        return RawJson(json.dumps([[round(v, 1) if math.isfinite(v) else None for v in row]
                                   for row in matrix.tolist()], separators=(",", ":")))
    one_decimal = "%.1f".__mod__
    rows = []
    for row, row_finite in zip(matrix.tolist(), finite.all(axis=1).tolist(), strict=True):
        if row_finite:
            rows.append("[" + ",".join(map(one_decimal, row)) + "]")
        else:
            rows.append("[" + ",".join(one_decimal(v) if math.isfinite(v) else "null"
                                       for v in row) + "]")
    return RawJson("[" + ",".join(rows) + "]")


def json_response(body: dict) -> Response:
    """Encode once, compactly (no per-request pydantic model: the schemas document it);
    :class:`RawJson` values go in as they are."""
    def encode(value) -> str:
        if isinstance(value, RawJson):
            return value
        return json.dumps(value, separators=(",", ":"), allow_nan=False)

    text = "{" + ",".join(f"{encode(key)}:{encode(value)}" for key, value in body.items()) + "}"
    return Response(text.encode(), media_type="application/json")


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
    a "new name" where the street name changes without a turn, arrive. A step's distance is
    the metres driven on its segments (the first and last only in part), so the steps add
    up to the route; its geometry is the route's, cut at the junctions. ``name`` is the OSM
    street name of the step's road (its ``name``, else ``ref``; "" for unnamed roads, as
    OSRM gives)."""
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
        renamed = graph.street_name(segment) != graph.street_name(segments[index - 1])
        if abs(angle) >= 30 or renamed:
            groups.append([index])
            angles.append(angle if abs(angle) >= 30 else None)
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
        kind = "depart" if number == 0 else "turn"
        if number and angles[number - 1] is None:
            kind = "new name"
        maneuver = {"location": (round(location[0], 6), round(location[1], 6)),
                    "bearing_before": before, "bearing_after": after, "type": kind}
        if number:
            angle = angles[number - 1]
            maneuver["modifier"] = "straight" if angle is None else _modifier(angle)
        duration = sum(times[i] for i in group)
        distance = sum(result.segment_distances_m[i] for i in group)
        intersection = {"location": maneuver["location"], "bearings": [after],
                        "entry": [True], "out": 0}
        if number:
            intersection = {"location": maneuver["location"],
                            "bearings": [(before + 180) % 360, after], "entry": [False, True],
                            "in": 0, "out": 1}
        out.append({"geometry": encode_geometry(coordinates, geometries), "maneuver": maneuver,
                    "mode": "driving", "driving_side": "right",
                    "name": graph.street_name(first),
                    "intersections": [intersection], "weight": round(duration, 1),
                    "duration": round(duration, 1), "distance": round(distance, 1)})
    end = (round(destination[0], 6), round(destination[1], 6))
    arrive_bearing = _bearing(bearing_out[segments[-1]]) if segments else 0
    out.append({"geometry": encode_geometry([destination, destination], geometries),
                "maneuver": {"location": end, "bearing_before": arrive_bearing,
                             "bearing_after": 0, "type": "arrive"},
                "mode": "driving", "driving_side": "right",
                "name": graph.street_name(segments[-1]) if segments else "",
                "intersections": [{"location": end, "bearings": [(arrive_bearing + 180) % 360],
                                   "entry": [True], "in": 0}],
                "weight": 0.0, "duration": 0.0, "distance": 0.0})
    return out


def leg_summary(graph: RoadGraph, result: RouteResult) -> str:
    """OSRM's leg ``summary``: the names of the (at most) two streets the leg drives
    longest on, in the order driven ("" when none is named)."""
    metres: dict[str, float] = {}
    first_seen: dict[str, int] = {}
    for index, segment in enumerate(result.segments):
        name = graph.street_name(segment)
        if name:
            metres[name] = metres.get(name, 0.0) + float(result.segment_distances_m[index])
            first_seen.setdefault(name, index)
    longest = sorted(metres, key=lambda name: -metres[name])[:2]
    return ", ".join(sorted(longest, key=first_seen.__getitem__))


def leg_annotation(graph: RoadGraph, result: RouteResult, fields: tuple[str, ...]) -> dict:
    """OSRM's per-leg ``annotation``, one value per road segment driven (OSRM gives one per
    pair of consecutive geometry points; nareta's graph is segments): durations are the
    route's per-segment times, distances the driven share of each segment's length, both
    summing to the leg's totals."""
    segments = result.segments
    raw = [float(graph["length_m"][s]) for s in segments]

    def position(point: Waypoint, segment: int) -> float | None:
        if segment == point.segment:
            return point.fraction
        return 1.0 - point.fraction if segment == point.twin else None

    if segments:
        start = position(result.origin, segments[0])
        end = position(result.destination, segments[-1])
        if len(segments) == 1 and start is not None and end is not None and end >= start:
            raw[0] *= end - start
        else:
            raw[0] *= 1.0 - start if start is not None else 1.0
            raw[-1] *= end if end is not None else 1.0
    total = sum(raw)
    scale = result.distance_m / total if total > 0 else 0.0
    distances = [value * scale for value in raw]
    durations = list(result.segment_times_s)
    columns = {
        "duration": [round(value, 1) for value in durations],
        "weight": [round(value, 1) for value in durations],
        "distance": [round(value, 2) for value in distances],
        "speed": [round(d / t, 1) if t > 0 else 0.0
                  for d, t in zip(distances, durations, strict=True)],
    }
    return {name: columns[name] for name in fields}
