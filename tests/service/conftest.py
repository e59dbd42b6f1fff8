"""A real uvicorn server (``nareta serve`` in a subprocess) on a free 127.0.0.1 port."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO

# Points in the bundled Baltimore extract (lon, lat).
DOWNTOWN = (-76.61, 39.29)
EAST = (-76.55, 39.30)
SOUTH_EAST = (-76.56, 39.28)
TEST_LIMITS = {"NARETA_MAX_MATRIX_SIZE": "20", "NARETA_MAX_BODY_BYTES": "20000",
               "NARETA_MAX_ISOCHRONE_S": "1800", "NARETA_MAX_ROUTE_WAYPOINTS": "5"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(base_url: str, process: subprocess.Popen | None = None,
               timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server at {base_url} not ready after {timeout_s} s")


@dataclass
class Server:
    base_url: str
    log_path: Path


@contextlib.contextmanager
def serve(graph_dir: Path, log_path: Path, **settings: str) -> Iterator[Server]:
    """``nareta serve`` in a subprocess on a free port, with NARETA_* ``settings`` (the
    model is free flow unless ``NARETA_MODEL_DIR`` is given)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "NARETA_GRAPH_DIR": str(graph_dir),
           "NARETA_PORT": str(port), "NARETA_MODEL_DIR": "freeflow", **settings}
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "nareta.cli", "serve"], cwd=REPO,
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, process)
        yield Server(base_url, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def server(bundled_graph_dir: Path, tmp_path_factory) -> Iterator[Server]:
    with serve(bundled_graph_dir, tmp_path_factory.mktemp("server") / "server.log",
               **TEST_LIMITS) as running:
        yield running


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        yield http


@pytest.fixture(scope="session")
def keyed_server(bundled_graph_dir: Path) -> Iterator[str]:
    """A second server, in a thread, built by ``create_app(Settings(...))`` with an API key
    and CORS origins."""
    import uvicorn

    from service.app import create_app
    from service.config import Settings

    settings = Settings(graph_dir=bundled_graph_dir, api_key="s3cret",
                        cors_origins="http://maps.example", access_log=False)
    port = free_port()
    uvicorn_server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1",
                                                   port=port, log_level="warning"))
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url)
        yield base_url
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=15)


def point(lon_lat: tuple[float, float]) -> dict:
    return {"lon": lon_lat[0], "lat": lon_lat[1]}
