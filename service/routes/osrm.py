"""OSRM v1 ``route`` and ``table`` services, so existing OSRM clients work unchanged.

Options arrive as plain strings and are parsed in :mod:`service.osrm`, so every bad value
gets OSRM's error code (400 ``InvalidUrl`` / ``InvalidQuery`` / ``InvalidValue`` /
``InvalidOptions`` / ``NoSegment`` / ``NoRoute`` / ``TooBig``).
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Query

from service import osrm
from service.deps import PredictorDep, SettingsDep
from service.errors import error_responses
from service.geometry import without_repeats
from service.schemas import OsrmRouteResponse, OsrmTableResponse

router = APIRouter(tags=["osrm"], responses=error_responses(400, 401, 503))
Option = Annotated[str | None, Query()]


@router.get("/route/v1/driving/{coordinates}", response_model=OsrmRouteResponse,
            response_model_exclude_none=True, summary="OSRM route service")
def route(coordinates: str, predictor: PredictorDep, settings: SettingsDep,
          overview: Option = None, geometries: Option = None, steps: Option = None,
          alternatives: Option = None, annotations: Option = None,
          continue_straight: Option = None, hints: Option = None, radiuses: Option = None,
          bearings: Option = None, generate_hints: Option = None) -> dict:
    points = osrm.parse_coordinates(coordinates, at_most=settings.max_route_waypoints)
    if len(points) < 2:
        raise osrm.invalid("InvalidValue", "a route needs at least two coordinates")
    overview_value = osrm.parse_choice("overview", overview, osrm.OVERVIEWS, "simplified")
    geometry_format = osrm.parse_choice("geometries", geometries, osrm.GEOMETRIES, "polyline")
    with_steps = osrm.parse_bool("steps", steps, False)
    if alternatives is not None and alternatives not in ("true", "false") and not (
            alternatives.isdigit()):
        raise osrm.invalid("InvalidValue", "alternatives must be true, false or a number")
    legs, geometry = [], []
    total_duration = total_distance = 0.0
    snapped = []
    for index in range(len(points) - 1):
        result = predictor.route(points[index], points[index + 1])
        leg_steps = osrm.steps(predictor.graph, result, geometry_format) if with_steps else []
        legs.append({"steps": leg_steps, "summary": "", "weight": round(result.eta_s, 1),
                     "duration": round(result.eta_s, 1),
                     "distance": round(result.distance_m, 1)})
        total_duration += result.eta_s
        total_distance += result.distance_m
        geometry.extend(result.coordinates if not geometry else result.coordinates[1:])
        snapped.append(result.origin)
        if index == len(points) - 2:
            snapped.append(result.destination)
    route_body = {"legs": legs, "weight_name": "duration", "weight": round(total_duration, 1),
                  "duration": round(total_duration, 1), "distance": round(total_distance, 1)}
    if overview_value != "false":
        route_body["geometry"] = osrm.encode_geometry(
            osrm.overview_coordinates(without_repeats(geometry), overview_value), geometry_format)
    return {"code": "Ok", "routes": [route_body],
            "waypoints": [osrm.waypoint(point) for point in snapped]}


@router.get("/table/v1/driving/{coordinates}", response_model=OsrmTableResponse,
            response_model_exclude_none=True, summary="OSRM table service")
def table(coordinates: str, predictor: PredictorDep, settings: SettingsDep,
          sources: Option = None, destinations: Option = None, annotations: Option = None,
          fallback_speed: Option = None, scale_factor: Option = None, hints: Option = None,
          radiuses: Option = None, bearings: Option = None,
          generate_hints: Option = None) -> dict:
    limit = settings.max_matrix_size
    points = osrm.parse_coordinates(coordinates, at_most=2 * limit)
    source_indices = osrm.parse_indices("sources", sources, len(points))
    destination_indices = osrm.parse_indices("destinations", destinations, len(points))
    if len(source_indices) > limit or len(destination_indices) > limit:
        raise osrm.invalid("TooBig", f"{len(source_indices)} sources x "
                           f"{len(destination_indices)} destinations; at most {limit} of each")
    wanted = (annotations or "duration").split(",")
    if not wanted or any(item not in ("duration", "distance") for item in wanted):
        raise osrm.invalid("InvalidValue", "annotations must be duration, distance or "
                           f"duration,distance; got {annotations!r}")
    result = predictor.matrix([points[i] for i in source_indices],
                              [points[j] for j in destination_indices])

    def cells(matrix) -> list[list[float | None]]:
        return [[round(v, 1) if math.isfinite(v) else None for v in row]
                for row in matrix.tolist()]

    body: dict = {"code": "Ok", "sources": [osrm.waypoint(p) for p in result.origins],
                  "destinations": [osrm.waypoint(p) for p in result.destinations]}
    if "duration" in wanted:
        body["durations"] = cells(result.durations_s)
    if "distance" in wanted:
        body["distances"] = cells(result.distances_m)
    return body
