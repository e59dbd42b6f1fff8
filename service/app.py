"""The FastAPI application: ``create_app(settings)`` builds it; the lifespan loads the
Predictor once (verifying the artifacts and answering one query) before serving."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from fastapi_offline import __file__ as _fastapi_offline_init

from models.inference.live import TrafficStore
from models.inference.predictor import Predictor
from nareta import __version__
from nareta.errors import InputError
from service.config import Settings
from service.deps import api_key_check
from service.errors import install_error_handlers
from service.geometry import network_geojson
from service.limits import MatrixWorkBudget
from service.metrics import Metrics
from service.middleware import RequestMiddleware
from service.routes import native, ops, osrm, traffic
from service.traffic import FeedState, load_file, watch_file

logger = logging.getLogger("nareta.service")
#: Swagger UI 5 assets (swagger-ui-bundle.js, swagger-ui.css, favicon.png)
SWAGGER_UI_DIR = Path(_fastapi_offline_init).parent / "static"


def load_predictor(settings: Settings) -> Predictor:
    """Load the artifacts (checksums verified) and prove them with a query of each kind
    (which also compiles every kernel the queries use before the server reports ready)."""
    predictor = Predictor.load(settings.graph_dir, settings.model_dir,
                               max_snap_distance_m=settings.max_snap_distance_m,
                               cache_runs=settings.cache_runs, cache_mb=settings.cache_mb,
                               traffic=TrafficStore(max_age_s=settings.traffic_max_age_s))
    graph = predictor.graph
    source, target = int(graph["edge_source"][0]), int(graph["edge_target"][0])
    a = (float(graph["node_lon"][source]), float(graph["node_lat"][source]))
    b = (float(graph["node_lon"][target]), float(graph["node_lat"][target]))
    predictor.eta(a, b)
    predictor.route(b, a)
    predictor.matrix([a, b], [b, a])
    predictor.isochrone(a, 60.0)
    return predictor


async def osrm_traffic_headers(request: Request) -> None:
    """OSRM answers keep OSRM's body; a model that takes live traffic says which snapshot it
    used in headers: ``X-Nareta-Traffic`` (``live`` or ``historical; <reason>``) and
    ``X-Nareta-Traffic-As-Of`` (ISO local time, only when live). OSRM queries carry no
    departure time, so they depart at the snapshot's newest observation."""
    predictor = getattr(request.app.state, "predictor", None)
    if predictor is None or not predictor.uses_traffic:
        return
    _, use = predictor.run_key(None)
    # the OSRM routes return ready-made Responses; RequestMiddleware adds these headers
    headers = {"X-Nareta-Traffic": "live" if use.live else f"historical; {use.reason}"}
    if use.live and use.as_of is not None:
        headers["X-Nareta-Traffic-As-Of"] = use.as_of.isoformat(timespec="seconds")
    request.state.response_headers = headers


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings: Settings = app.state.settings
    # ``nareta serve`` loads (and so checks) the artifacts before it listens; else load here
    predictor = app.state.predictor or load_predictor(settings)
    watcher = None
    if settings.traffic_path is not None:
        if not predictor.uses_traffic:
            raise InputError(f"--traffic {settings.traffic_path}: the model "
                             f"({predictor.model.name}) takes no live traffic")
        load_file(predictor, app.state.traffic, settings.traffic_path)
        if settings.traffic_reload_s > 0:
            watcher = asyncio.create_task(watch_file(predictor, app.state.traffic,
                                                     settings.traffic_path,
                                                     settings.traffic_reload_s))
    app.state.network_geojson = network_geojson(predictor.graph)
    app.state.predictor = predictor
    app.state.metrics.model_info.labels(predictor.model.name, predictor.model.identity,
                                        predictor.graph.identity).set(1)
    app.state.metrics.ready.set(1)
    logger.info("ready: model %s on graph %s (%d nodes, %d segments)", predictor.model.name,
                predictor.graph.identity[:12], predictor.graph.num_nodes,
                predictor.graph.num_segments)
    yield
    if watcher is not None:
        watcher.cancel()
    app.state.metrics.ready.set(0)
    app.state.predictor = None


def create_app(settings: Settings, predictor: Predictor | None = None) -> FastAPI:
    """The app; ``predictor``, when given, is served instead of loading one in the lifespan
    (``nareta serve`` loads it first so that bad artifacts stop it before it listens)."""
    app = FastAPI(title="nareta", version=__version__, lifespan=lifespan,
                  description="Road-network ETA and routing (native API and OSRM v1 "
                              "compatible route / table services).",
                  docs_url=None, redoc_url=None)
    # Swagger UI 5 (reads OpenAPI 3.1, which FastAPI writes; 4.x cannot) from the
    # fastapi-offline package's static files, not a CDN: /docs works offline.
    app.mount("/docs-assets", StaticFiles(directory=str(SWAGGER_UI_DIR)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="nareta API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon.png")

    app.state.settings = settings
    app.state.predictor = predictor
    app.state.traffic = FeedState()
    app.state.metrics = Metrics(app.state)
    app.state.matrix_budget = MatrixWorkBudget(settings.max_matrix_work_cells,
                                               retry_after_s=settings.retry_after_s)
    install_error_handlers(app)
    protected = [Depends(api_key_check(settings))] if settings.api_key else []
    app.include_router(native.router, dependencies=protected)
    app.include_router(osrm.router, dependencies=[*protected, Depends(osrm_traffic_headers)])
    app.include_router(traffic.router, dependencies=protected)
    app.include_router(ops.router)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["*"])
    app.add_middleware(RequestMiddleware, max_body_bytes=settings.max_body_bytes,
                       metrics=app.state.metrics, access_log=settings.access_log,
                       max_in_flight=settings.max_in_flight,
                       max_queued=settings.max_queued,
                       queue_timeout_s=settings.queue_timeout_s,
                       body_timeout_s=settings.body_timeout_s,
                       retry_after_s=settings.retry_after_s,
                       path_limits={"/v1/traffic": settings.max_traffic_body_bytes})
    return app


def app_from_environment() -> FastAPI:
    """App factory for ``uvicorn --factory`` worker processes: settings from NARETA_*."""
    from service.cli import _limit_malloc_arenas

    _limit_malloc_arenas()
    return create_app(Settings())
