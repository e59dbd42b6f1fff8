"""``nareta serve``: run the HTTP API under uvicorn. Options override ``NARETA_*``."""

from __future__ import annotations

import argparse
import ctypes
import os

from pydantic import ValidationError

from nareta.errors import InputError


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--graph", help="RoadGraph directory (env NARETA_GRAPH_DIR; default: "
                                        "the bundled city, ingested once into the cache)")
    parser.add_argument("--model", help="model artifact, 'freeflow' or 'freeflow-turns' (env "
                                        "NARETA_MODEL_DIR; default: the shipped model if "
                                        "trained on the graph, else freeflow)")
    parser.add_argument("--host", help="bind address (env NARETA_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (env NARETA_PORT, default 8000)")
    parser.add_argument("--log-level", help="critical|error|warning|info|debug")
    parser.add_argument("--workers", type=int,
                        help="server processes, each with its own model (env NARETA_WORKERS, "
                             "default 1); one per core uses every core")


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each worker thread its own malloc arena and keeps freed numpy buffers in
    them, so RSS creeps up with the threadpool's size; two arenas keep it flat. (Same as
    MALLOC_ARENA_MAX=2.) A fixed mmap threshold of 256 KiB also stops glibc from raising it
    after large frees, so big per-query arrays are mapped and returned to the OS instead of
    staying in the heap. A no-op on other C libraries."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, arenas)  # M_ARENA_MAX
        libc.mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD (fixed: no dynamic growth)
    except (OSError, AttributeError):
        pass


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from nareta.defaults import resolve_artifacts
    from service.app import create_app
    from service.config import Settings
    from service.logs import log_config

    # unset (option and environment): the bundled city and the model that matches it (the
    # server's start-up log names the model, so no line about it here)
    graph, model = resolve_artifacts(args.graph or os.environ.get("NARETA_GRAPH_DIR") or None,
                                     args.model or os.environ.get("NARETA_MODEL_DIR") or None,
                                     say_model=False)
    overrides = {key: value for key, value in (
        ("graph_dir", graph), ("model_dir", model), ("host", args.host),
        ("port", args.port), ("log_level", args.log_level),
        ("workers", getattr(args, "workers", None))) if value is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"NARETA_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                             for e in exc.errors())
        raise InputError(f"invalid settings: {problems}") from None
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _limit_malloc_arenas()
    options = {"host": settings.host, "port": settings.port, "access_log": False,
               "log_config": log_config(settings.log_level), "log_level": settings.log_level,
               "timeout_graceful_shutdown": 5}
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **options)
        return 0
    # Several processes: each builds its app from the environment (the validated settings,
    # command-line overrides included, are handed down as NARETA_* variables).
    for key, value in overrides.items():
        os.environ[f"NARETA_{key.upper()}"] = str(value)
    from uvicorn.supervisors import Multiprocess

    from service.server import TcpConfig

    config = TcpConfig("service.app:app_from_environment", factory=True,
                        workers=settings.workers, **options)
    Multiprocess(config, sockets=[config.bind_socket()]).run()
    return 0

