"""OSRM v1 ``route``, ``table`` and ``nearest`` services, so existing OSRM clients work
unchanged.

Options arrive as plain strings and are parsed in :mod:`service.osrm`, so every bad value
gets OSRM's error code (400 ``InvalidUrl`` / ``InvalidQuery`` / ``InvalidValue`` /
``InvalidOptions`` / ``NoSegment`` / ``NoRoute`` / ``TooBig``). Points snap as OSRM snaps:
to the nearest road however far, unless ``radiuses`` limits it per coordinate (the native
API keeps its own limit, ``NARETA_MAX_SNAP_DISTANCE_M``). Bodies are encoded once with
:func:`service.osrm.json_response`; the response models document them.
"""

from __future__ import annotations

import math

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from models.inference.predictor import Waypoint
from nareta.errors import TooBigError
from service import osrm
from service.deps import PredictorDep, SettingsDep
from service.errors import error_responses
from service.geometry import without_repeats
from service.limits import check_matrix_work
from service.schemas import OsrmNearestResponse, OsrmRouteResponse, OsrmTableResponse

router = APIRouter(tags=["osrm"], responses=error_responses(400, 401, 503))
#: Most roads one ``nearest`` request may ask for.
MAX_NEAREST = 100


def _hints(generate_hints: str | None) -> bool:
    return osrm.parse_bool("generate_hints", generate_hints, True)


@router.get("/route/v1/driving/{coordinates}", response_model=OsrmRouteResponse,
            response_model_exclude_none=True, summary="OSRM route service",
            openapi_extra=osrm.openapi_parameters("route"))
async def route(request: Request, coordinates: str, predictor: PredictorDep,
                settings: SettingsDep) -> Response:
    """Runs on the event loop: a route is a few hundred microseconds of work (hierarchy
    queries), less than the thread-pool hand-off a sync endpoint pays."""
    points = osrm.parse_coordinates(coordinates, at_most=settings.max_route_waypoints)
    if len(points) < 2:
        raise osrm.invalid("InvalidValue", "a route needs at least two coordinates")
    option = request.query_params.get
    osrm.check_options(request.query_params, "route", len(points))
    osrm.check_hints(option("hints"), len(points), predictor.graph.num_segments)
    overview = osrm.parse_choice("overview", option("overview"), osrm.OVERVIEWS, "simplified")
    geometry_format = osrm.parse_choice("geometries", option("geometries"), osrm.GEOMETRIES,
                                        "polyline")
    with_steps = osrm.parse_bool("steps", option("steps"), False)
    fields = osrm.parse_route_annotations(option("annotations"))
    with_hints = _hints(option("generate_hints"))
    skip = osrm.parse_bool("skip_waypoints", option("skip_waypoints"), False)
    alternatives = option("alternatives")
    if alternatives is not None and alternatives not in ("true", "false") and not (
            alternatives.isdigit()):
        raise osrm.invalid("InvalidValue", "alternatives must be true, false or a number")
    snapped = predictor.snap(points, max_distance_m=osrm.parse_radiuses(option("radiuses"),
                                                                        len(points)))
    legs, geometry = [], []
    total_duration = total_distance = 0.0
    for index in range(len(points) - 1):
        result = predictor.route(snapped[index], snapped[index + 1],
                                 geometry=overview != "false")
        leg_steps = osrm.steps(predictor.graph, result, geometry_format) if with_steps else []
        leg = {"steps": leg_steps, "summary": osrm.leg_summary(predictor.graph, result),
               "weight": round(result.eta_s, 1),
               "duration": round(result.eta_s, 1), "distance": round(result.distance_m, 1)}
        if fields:
            leg["annotation"] = osrm.leg_annotation(predictor.graph, result, fields)
        legs.append(leg)
        total_duration += result.eta_s
        total_distance += result.distance_m
        if overview != "false":
            geometry.extend(result.coordinates if not geometry else result.coordinates[1:])
    route_body = {"legs": legs, "weight_name": "duration", "weight": round(total_duration, 1),
                  "duration": round(total_duration, 1), "distance": round(total_distance, 1)}
    if overview != "false":
        route_body["geometry"] = osrm.encode_geometry(
            osrm.overview_coordinates(without_repeats(geometry), overview), geometry_format)
    body: dict = {"code": "Ok", "routes": [route_body]}
    if not skip:
        body["waypoints"] = [osrm.waypoint(point, hints=with_hints, graph=predictor.graph)
                             for point in snapped]
    return osrm.json_response(body)


@router.get("/table/v1/driving/{coordinates}", response_model=OsrmTableResponse,
            response_model_exclude_none=True, summary="OSRM table service",
            openapi_extra=osrm.openapi_parameters("table"))
def table(request: Request, coordinates: str, predictor: PredictorDep,
          settings: SettingsDep) -> Response:
    """Durations / distances between sources and destinations: ``null`` where no route
    joins a pair or where a coordinate has no road within its radius (unless
    ``fallback_speed`` fills the cell with the crow-fly estimate, as OSRM does)."""
    limit = settings.max_matrix_size
    points = osrm.parse_coordinates(coordinates, at_most=2 * limit)
    option = request.query_params.get
    osrm.check_options(request.query_params, "table", len(points))
    osrm.check_hints(option("hints"), len(points), predictor.graph.num_segments)
    source_indices = osrm.parse_indices("sources", option("sources"), len(points))
    destination_indices = osrm.parse_indices("destinations", option("destinations"),
                                             len(points))
    if len(source_indices) > limit or len(destination_indices) > limit:
        raise osrm.invalid("TooBig", f"{len(source_indices)} sources x "
                           f"{len(destination_indices)} destinations; at most {limit} of each")
    try:
        check_matrix_work(len(source_indices), len(destination_indices), settings)
    except TooBigError as exc:
        raise osrm.invalid("TooBig", str(exc)) from None
    annotations = option("annotations")
    wanted = (annotations or "duration").split(",")
    if not wanted or any(item not in ("duration", "distance") for item in wanted):
        raise osrm.invalid("InvalidValue", "annotations must be duration, distance or "
                           f"duration,distance; got {annotations[:40]!r}")
    speed = osrm.parse_positive("fallback_speed", option("fallback_speed"))
    fallback_from = osrm.parse_choice("fallback_coordinate", option("fallback_coordinate"),
                                      ("input", "snapped"), "input")
    scale = osrm.parse_positive("scale_factor", option("scale_factor"))
    with_hints = _hints(option("generate_hints"))
    skip = osrm.parse_bool("skip_waypoints", option("skip_waypoints"), False)
    radii = osrm.parse_radiuses(option("radiuses"), len(points))

    snapped = predictor.snap(points, max_distance_m=radii, missing_ok=True)
    durations = np.full((len(source_indices), len(destination_indices)), np.nan)
    distances = np.full_like(durations, np.nan)
    rows = [r for r, i in enumerate(source_indices) if snapped[i].segment >= 0]
    columns = [c for c, j in enumerate(destination_indices) if snapped[j].segment >= 0]
    if rows and columns:
        with request.app.state.matrix_budget.hold(len(rows) * len(columns),
                                                  timeout_s=settings.queue_timeout_s):
            result = predictor.matrix([snapped[source_indices[r]] for r in rows],
                                      [snapped[destination_indices[c]] for c in columns],
                                      distances="distance" in wanted)
        durations[np.ix_(rows, columns)] = result.durations_s
        distances[np.ix_(rows, columns)] = result.distances_m
    body: dict = {"code": "Ok"}
    if speed is not None:
        # OSRM: cells with no route get the crow-fly distance at fallback_speed
        missing = ~np.isfinite(durations)
        if missing.any():
            def where(index: int) -> tuple[float, float]:
                point = snapped[index]
                use_snapped = fallback_from == "snapped" and math.isfinite(point.distance_m)
                return (point.lon, point.lat) if use_snapped else points[index]

            crow = osrm.crow_fly_m([where(i) for i in source_indices],
                                   [where(j) for j in destination_indices])
            durations[missing] = crow[missing] / speed
            distances[missing] = crow[missing]
        body["fallback_speed_cells"] = np.argwhere(missing).tolist()
    if scale is not None:
        durations = durations * scale

    if "duration" in wanted:
        body["durations"] = osrm.matrix_json(durations)
    if "distance" in wanted:
        body["distances"] = osrm.matrix_json(distances)
    if not skip:
        body["sources"] = [osrm.waypoint(snapped[i], hints=with_hints, query=points[i],
                                         graph=predictor.graph)
                           for i in source_indices]
        body["destinations"] = [osrm.waypoint(snapped[j], hints=with_hints, query=points[j],
                                              graph=predictor.graph)
                                for j in destination_indices]
    return osrm.json_response(body)


@router.get("/nearest/v1/driving/{coordinates}", response_model=OsrmNearestResponse,
            response_model_exclude_none=True, summary="OSRM nearest service",
            openapi_extra=osrm.openapi_parameters("nearest"))
def nearest(request: Request, coordinates: str, predictor: PredictorDep) -> Response:
    """The ``number`` nearest roads to one coordinate, nearest first, each with the OSM
    ids of the two nodes of the road piece it lies on."""
    points = osrm.parse_coordinates(coordinates, at_most=100)
    if len(points) != 1:
        raise osrm.invalid("InvalidOptions", f"nearest takes one coordinate, got {len(points)}")
    option = request.query_params.get
    osrm.check_options(request.query_params, "nearest", 1)
    osrm.check_hints(option("hints"), 1, predictor.graph.num_segments)
    number = option("number")
    count = 1
    if number is not None:
        if not number.isdigit() or not 1 <= int(number) <= MAX_NEAREST:
            raise osrm.invalid("InvalidOptions", f"number must be an integer from 1 to "
                               f"{MAX_NEAREST}, got {number[:40]!r}")
        count = int(number)
    (radius,) = osrm.parse_radiuses(option("radiuses"), 1)
    with_hints = _hints(option("generate_hints"))
    skip = osrm.parse_bool("skip_waypoints", option("skip_waypoints"), False)
    ((lon, lat),) = points
    snaps, ends = predictor.snapper.nearest(lon, lat, count=count)
    keep = snaps.distance_m <= radius
    if not keep.any():
        raise osrm.invalid("NoSegment", "could not find a matching segment for coordinate 0 "
                           f"within {radius:.0f} m")
    osm_node = predictor.graph["path_osm_node"]
    body: dict = {"code": "Ok"}
    if not skip:
        found = []
        for i in np.flatnonzero(keep).tolist():
            point = Waypoint(float(snaps.lon[i]), float(snaps.lat[i]),
                                  float(snaps.distance_m[i]), int(snaps.segment[i]),
                                  int(snaps.twin[i]), float(snaps.fraction[i]))
            found.append({"nodes": [int(osm_node[ends[i, 0]]), int(osm_node[ends[i, 1]])],
                          **osrm.waypoint(point, hints=with_hints, graph=predictor.graph)})
        body["waypoints"] = found
    return osrm.json_response(body)
