"""The FastAPI application: ``create_app(settings)`` builds it; the lifespan loads the
Predictor once (verifying the artifacts and answering one query) before serving."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from fastapi_offline import __file__ as _fastapi_offline_init

from models.predictor import Predictor
from nareta import __version__
from service.config import Settings
from service.deps import api_key_check
from service.errors import install_error_handlers
from service.geometry import network_geojson
from service.metrics import Metrics
from service.middleware import RequestMiddleware
from service.routes import native, ops, osrm

logger = logging.getLogger("nareta.service")
#: Swagger UI 5 assets (swagger-ui-bundle.js, swagger-ui.css, favicon.png)
SWAGGER_UI_DIR = Path(_fastapi_offline_init).parent / "static"


def load_predictor(settings: Settings) -> Predictor:
    """Load the artifacts (checksums verified) and prove them with a query of each kind
    (which also compiles every kernel the queries use before the server reports ready)."""
    predictor = Predictor.load(settings.graph_dir, settings.model_dir,
                               max_snap_distance_m=settings.max_snap_distance_m,
                               cache_runs=settings.cache_runs, cache_mb=settings.cache_mb)
    graph = predictor.graph
    source, target = int(graph["edge_source"][0]), int(graph["edge_target"][0])
    a = (float(graph["node_lon"][source]), float(graph["node_lat"][source]))
    b = (float(graph["node_lon"][target]), float(graph["node_lat"][target]))
    predictor.eta(a, b)
    predictor.route(b, a)
    predictor.matrix([a, b], [b, a])
    predictor.isochrone(a, 60.0)
    return predictor


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings: Settings = app.state.settings
    predictor = load_predictor(settings)
    app.state.network_geojson = network_geojson(predictor.graph)
    app.state.predictor = predictor
    app.state.metrics.model_info.labels(predictor.model.name, predictor.model.identity,
                                        predictor.graph.identity).set(1)
    app.state.metrics.ready.set(1)
    logger.info("ready: model %s on graph %s (%d nodes, %d segments)", predictor.model.name,
                predictor.graph.identity[:12], predictor.graph.num_nodes,
                predictor.graph.num_segments)
    yield
    app.state.metrics.ready.set(0)
    app.state.predictor = None


def create_app(settings: Settings) -> FastAPI:
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
    app.state.predictor = None
    app.state.metrics = Metrics(app.state)
    install_error_handlers(app)
    protected = [Depends(api_key_check(settings))] if settings.api_key else []
    app.include_router(native.router, dependencies=protected)
    app.include_router(osrm.router, dependencies=protected)
    app.include_router(ops.router)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["*"])
    app.add_middleware(RequestMiddleware, max_body_bytes=settings.max_body_bytes,
                       metrics=app.state.metrics, access_log=settings.access_log)
    return app


def app_from_environment() -> FastAPI:
    """App factory for ``uvicorn --factory`` worker processes: settings from NARETA_*."""
    from service.cli import _limit_malloc_arenas

    _limit_malloc_arenas()
    return create_app(Settings())
