"""``nareta serve``: run the HTTP API under uvicorn. Options override ``NARETA_*``."""

from __future__ import annotations

import argparse
import ctypes
import os

from pydantic import ValidationError

from nareta.errors import InputError, NaretaError


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--graph", help="RoadGraph directory (env NARETA_GRAPH_DIR; default: "
                                        "the bundled city, ingested once into the cache)")
    parser.add_argument("--model", help="model artifact, 'freeflow', 'freeflow-turns' or "
                                        "'live-scalar' (env NARETA_MODEL_DIR; default: the "
                                        "shipped model if trained on the graph, else freeflow)")
    parser.add_argument("--host", help="bind address (env NARETA_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (env NARETA_PORT, default 8000)")
    parser.add_argument("--log-level", help="critical|error|warning|info|debug")
    parser.add_argument("--workers", type=int,
                        help="server processes, each with its own model (env NARETA_WORKERS, "
                             "default 1); one per core uses every core")
    parser.add_argument("--traffic", help="traffic feed file or directory loaded at start-up "
                                          "and reloaded when it changes (env "
                                          "NARETA_TRAFFIC_PATH); the model must take live "
                                          "traffic")
    parser.add_argument("--traffic-max-age-s", type=float,
                        help="observations older than this are ignored (env "
                             "NARETA_TRAFFIC_MAX_AGE_S, default 1800)")


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


def _check_traffic(predictor, settings) -> None:
    """``--traffic``: the model must take live traffic and the feed must load (FeedError,
    an InputError, names the file and the rejected rows)."""
    if settings.traffic_path is None:
        return
    if not predictor.uses_traffic:
        raise InputError(f"--traffic {settings.traffic_path}: the model "
                         f"({predictor.model.name}) takes no live traffic")
    predictor.traffic.load(predictor.graph, settings.traffic_path)


def _one_torch_thread() -> None:
    """Torch's only work in a server is a run key's encoder pass; with one worker per core
    its intra-op threads only contend (a plan took 0.22 s with two threads and 0.06 s with
    one on a 2-core machine). Worker processes inherit the environment variable."""
    import torch

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from nareta.defaults import resolve_artifacts
    from service.app import create_app, load_predictor
    from service.config import Settings
    from service.logs import log_config
    from service.server import TcpConfig, bind_tcp_socket

    # unset (option and environment): the bundled city and the model that matches it (the
    # server's start-up log names the model, so no line about it here)
    graph, model = resolve_artifacts(args.graph or os.environ.get("NARETA_GRAPH_DIR") or None,
                                     args.model or os.environ.get("NARETA_MODEL_DIR") or None,
                                     say_model=False)
    overrides = {key: value for key, value in (
        ("graph_dir", graph), ("model_dir", model), ("host", args.host),
        ("port", args.port), ("log_level", args.log_level),
        ("workers", getattr(args, "workers", None)),
        ("traffic_path", getattr(args, "traffic", None)),
        ("traffic_max_age_s", getattr(args, "traffic_max_age_s", None))) if value is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"NARETA_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                             for e in exc.errors())
        raise InputError(f"invalid settings: {problems}") from None
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _limit_malloc_arenas()
    _one_torch_thread()
    options = {"host": settings.host, "port": settings.port, "access_log": False,
               "log_config": log_config(settings.log_level), "log_level": settings.log_level,
               "timeout_graceful_shutdown": 5, "timeout_keep_alive": settings.keep_alive_s,
               "header_timeout_s": settings.header_timeout_s,
               # a worker builds its contraction hierarchy at start-up (seconds on a big
               # graph); the supervisor must not take that for a hung worker
               "timeout_worker_healthcheck": 120}
    if settings.workers == 1:
        # Load (and so check) the artifacts and bind the port before serving: a bad
        # artifact, a feed the model cannot take or a busy port is one line on stderr and
        # exit 2, as in every command.
        sock = bind_tcp_socket(settings.host, settings.port)
        predictor = load_predictor(settings)
        _check_traffic(predictor, settings)
        config = TcpConfig(create_app(settings, predictor), **options)
        server = uvicorn.Server(config)
        server.run(sockets=[sock])
        if not server.started:
            raise NaretaError("the server did not start; see the log above")
        return 0
    # Several processes: each builds its app from the environment (the validated settings,
    # command-line overrides included, are handed down as NARETA_* variables). The
    # artifacts are checked here first, so a bad one stops the command before any worker
    # starts (each worker then loads its own copy).
    from uvicorn.supervisors import Multiprocess

    config = TcpConfig("service.app:app_from_environment", factory=True,
                        workers=settings.workers, **options)
    sock = config.bind_socket()
    _check_traffic(load_predictor(settings), settings)
    for key, value in overrides.items():
        os.environ[f"NARETA_{key.upper()}"] = str(value)
    Multiprocess(config, sockets=[sock]).run()
    return 0
