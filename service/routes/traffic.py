"""Live traffic: ``GET /v1/traffic`` (the current snapshot) and ``POST /v1/traffic``
(observation rows that replace, or merge into, the snapshot). See :mod:`service.traffic`."""

from __future__ import annotations

from fastapi import APIRouter, Request

from models.inference.live import local_datetime
from nareta.errors import TooBigError
from service.deps import PredictorDep, SettingsDep
from service.errors import ServiceError, error_responses
from service.schemas import TrafficPostResponse, TrafficRequest, TrafficResponse
from service.traffic import (
    FeedRejected,
    FeedState,
    post_rows,
    snapshot_summary,
    traffic_use_json,
)

router = APIRouter(prefix="/v1", tags=["traffic"])


def _state(request: Request) -> FeedState:
    return request.app.state.traffic


def _status(request: Request, predictor) -> dict:
    _, use = predictor.run_key(None) if predictor.uses_traffic else (None, None)
    return {"model_uses_traffic": predictor.uses_traffic,
            "max_age_s": predictor.traffic.max_age_s,
            "snapshot": snapshot_summary(predictor, _state(request)),
            "now": traffic_use_json(use)}


@router.get("/traffic", response_model=TrafficResponse, summary="The live traffic snapshot",
            responses=error_responses(401, 503))
def get_traffic(request: Request, predictor: PredictorDep) -> dict:
    return _status(request, predictor)


@router.post("/traffic", response_model=TrafficPostResponse,
             summary="Replace (or merge into) the live traffic snapshot",
             responses=error_responses(400, 401, 409, 413, 422, 503))
def post_traffic(body: TrafficRequest, request: Request, predictor: PredictorDep,
                 settings: SettingsDep) -> dict:
    if not predictor.uses_traffic:
        raise ServiceError(409, "NoTrafficModel",
                           f"the served model ({predictor.model.name}) takes no live traffic; "
                           "serve a model trained with a feed or 'live-scalar'")
    if len(body.rows) > settings.max_traffic_rows:
        raise TooBigError(f"{len(body.rows)} traffic rows; at most {settings.max_traffic_rows} "
                          "per request (NARETA_MAX_TRAFFIC_ROWS)")
    rows = [row.model_dump(exclude_unset=True) for row in body.rows]
    try:
        report, now_s = post_rows(predictor, _state(request), rows, now=body.now,
                                  merge=body.mode == "merge")
    except FeedRejected as exc:
        raise TrafficRejected(str(exc), exc.report.to_json()) from None
    return {**_status(request, predictor), "report": report.to_json(), "mode": body.mode,
            "feed_now": local_datetime(now_s).replace(microsecond=0)}


@router.delete("/traffic", response_model=TrafficResponse,
               summary="Drop the live traffic snapshot (answers fall back to the historical "
                       "model)", responses=error_responses(401, 503))
def delete_traffic(request: Request, predictor: PredictorDep) -> dict:
    state = _state(request)
    with state.lock:
        predictor.set_traffic(None)
        state.source = state.loaded_utc = state.report = None
    return _status(request, predictor)


class TrafficRejected(ServiceError):
    """400 with the rows' counts by reason."""

    def __init__(self, message: str, report: dict):
        super().__init__(400, "InvalidValue", message)
        self.report = report
