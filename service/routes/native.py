"""The native API: ETA, route, matrix and isochrone. Sync ``def`` routes, so the CPU work
runs in the threadpool and never blocks the event loop."""

from __future__ import annotations

import math

from fastapi import APIRouter, Request

from models.inference.predictor import TrafficUse, Waypoint
from nareta.errors import TooBigError
from service.deps import PredictorDep, SettingsDep
from service.errors import error_responses
from service.geometry import isochrone_features, without_repeats
from service.limits import check_matrix_work
from service.schemas import (
    EtaRequest,
    EtaResponse,
    IsochroneRequest,
    IsochroneResponse,
    LineString,
    MatrixRequest,
    MatrixResponse,
    RouteRequest,
    RouteResponse,
    TrafficStatus,
    WaypointResponse,
)

router = APIRouter(prefix="/v1", tags=["native"],
                   responses=error_responses(400, 401, 413, 422, 503))


def _waypoint(point: Waypoint) -> WaypointResponse:
    return WaypointResponse(location=(round(point.lon, 6), round(point.lat, 6)),
                            distance_m=round(point.distance_m, 2))


def _cell(value: float) -> float | None:
    return round(float(value), 2) if math.isfinite(value) else None


def _traffic(use: TrafficUse | None) -> dict:
    """``traffic_as_of`` (null unless the answer used live traffic) and ``traffic`` (null
    when the model takes none)."""
    return {"traffic_as_of": use.as_of if use is not None and use.live else None,
            "traffic": None if use is None else TrafficStatus(
                live=use.live, reason=use.reason, as_of=use.as_of, snapshot=use.snapshot)}


@router.post("/eta", response_model=EtaResponse, summary="Travel time between two points")
def eta(body: EtaRequest, predictor: PredictorDep) -> EtaResponse:
    result = predictor.eta((body.origin.lon, body.origin.lat),
                           (body.destination.lon, body.destination.lat), body.departure_time)
    return EtaResponse(eta_s=round(result.eta_s, 2), distance_m=round(result.distance_m, 2),
                       origin=_waypoint(result.origin),
                       destination=_waypoint(result.destination),
                       departure_time=body.departure_time, model=predictor.model.name,
                       **_traffic(result.traffic))


@router.post("/route", response_model=RouteResponse,
             summary="Route geometry (GeoJSON), distance and per-segment times")
def route(body: RouteRequest, predictor: PredictorDep) -> RouteResponse:
    result = predictor.route((body.origin.lon, body.origin.lat),
                             (body.destination.lon, body.destination.lat), body.departure_time)
    return RouteResponse(
        eta_s=round(result.eta_s, 2), distance_m=round(result.distance_m, 2),
        origin=_waypoint(result.origin), destination=_waypoint(result.destination),
        departure_time=body.departure_time, model=predictor.model.name,
        geometry=LineString(coordinates=[(round(lon, 6), round(lat, 6))
                                         for lon, lat in without_repeats(result.coordinates)]),
        segment_ids=result.segments,
        segment_times_s=[round(t, 3) for t in result.segment_times_s],
        fallback_used=result.fallback_used, fallback_reason=result.fallback_reason,
        **_traffic(result.traffic))


@router.post("/matrix", response_model=MatrixResponse,
             summary="Durations and distances between every origin and destination")
def matrix(body: MatrixRequest, predictor: PredictorDep, settings: SettingsDep,
           request: Request) -> MatrixResponse:
    destinations = body.destinations if body.destinations is not None else body.origins
    limit = settings.max_matrix_size
    if len(body.origins) > limit or len(destinations) > limit:
        raise TooBigError(f"{len(body.origins)} origins x {len(destinations)} destinations; "
                          f"at most {limit} of each are allowed")
    check_matrix_work(len(body.origins), len(destinations), settings)
    with request.app.state.matrix_budget.hold(len(body.origins) * len(destinations),
                                              timeout_s=settings.queue_timeout_s):
        result = predictor.matrix([(p.lon, p.lat) for p in body.origins],
                                  [(p.lon, p.lat) for p in destinations], body.departure_time)
    return MatrixResponse(
        durations_s=[[_cell(v) for v in row] for row in result.durations_s.tolist()],
        distances_m=[[_cell(v) for v in row] for row in result.distances_m.tolist()],
        origins=[_waypoint(p) for p in result.origins],
        destinations=[_waypoint(p) for p in result.destinations], model=predictor.model.name,
        **_traffic(result.traffic))


@router.post("/isochrone", response_model=IsochroneResponse,
             summary="The road reachable within max_seconds, as GeoJSON")
def isochrone(body: IsochroneRequest, predictor: PredictorDep,
              settings: SettingsDep) -> IsochroneResponse:
    if body.max_seconds > settings.max_isochrone_s:
        raise TooBigError(f"max_seconds {body.max_seconds:g} is over this server's limit of "
                          f"{settings.max_isochrone_s:g} s")
    result = predictor.isochrone((body.origin.lon, body.origin.lat), body.max_seconds,
                                 body.departure_time)
    features = isochrone_features(predictor.graph, result, body.area)
    reachable = int((result.node_time_s <= body.max_seconds).sum())
    return IsochroneResponse.model_validate({
        "features": features, "origin": _waypoint(result.origin).model_dump(),
        "max_seconds": body.max_seconds, "reachable_nodes": reachable,
        "model": predictor.model.name, **_traffic(result.traffic)})
