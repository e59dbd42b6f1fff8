"""Operations: liveness, readiness, Prometheus metrics, the map page and its network layer."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from service.deps import PredictorDep
from service.errors import error_responses
from service.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=HealthResponse, summary="Liveness")
async def health() -> HealthResponse:
    return HealthResponse()


@router.get("/ready", response_model=ReadyResponse, summary="Readiness: model loaded",
            responses={503: {"model": ReadyResponse, "description": "not ready"}})
async def ready(request: Request):
    predictor = getattr(request.app.state, "predictor", None)
    if predictor is None or not predictor.ready:
        return JSONResponse(ReadyResponse(ready=False).model_dump(), status_code=503)
    return ReadyResponse(ready=True, model=predictor.model.name,
                         model_identity=predictor.model.identity,
                         graph_identity=predictor.graph.identity,
                         nodes=predictor.graph.num_nodes,
                         segments=predictor.graph.num_segments)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition format"}})
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(),
                    media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/v1/network.geojson", summary="The road network as GeoJSON", response_class=Response,
            responses={200: {"content": {"application/geo+json": {"schema": {"type": "object"}}},
                             "description": "FeatureCollection, one MultiLineString per "
                                            "highway class"}, **error_responses(503)})
async def network(request: Request, predictor: PredictorDep) -> Response:
    return Response(request.app.state.network_geojson, media_type="application/geo+json")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def map_page() -> HTMLResponse:
    return HTMLResponse((files("service") / "static" / "map.html").read_text())
