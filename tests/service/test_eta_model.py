"""The service over the learned ETA model (the shipped Baltimore model): real uvicorn."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import REPO
from tests.service.conftest import DOWNTOWN, EAST, serve

SHIPPED_MODEL = REPO / "artifacts_shipped" / "eta_baltimore"


@pytest.fixture(scope="module")
def eta_client(bundled_graph_dir, tmp_path_factory) -> Iterator[httpx.Client]:
    log_path = tmp_path_factory.mktemp("eta-server") / "server.log"
    # two server processes (nareta serve --workers 2), as the benchmark runs it
    with serve(bundled_graph_dir, log_path, NARETA_MODEL_DIR=str(SHIPPED_MODEL),
               NARETA_WORKERS="2") as running, \
            httpx.Client(base_url=running.base_url, timeout=60) as client:
        yield client


def test_route_with_the_learned_model(eta_client):
    body = {"origin": {"lon": DOWNTOWN[0], "lat": DOWNTOWN[1]},
            "destination": {"lon": EAST[0], "lat": EAST[1]},
            "departure_time": "2026-11-18T07:30:00"}
    response = eta_client.post("/v1/route", json=body)
    assert response.status_code == 200, response.text
    route = response.json()
    assert route["eta_s"] > 0 and route["distance_m"] > 0
    assert route["geometry"]["type"] == "LineString"
    assert len(route["geometry"]["coordinates"]) >= 2
    eta = eta_client.post("/v1/eta", json=body).json()
    assert eta["eta_s"] == pytest.approx(route["eta_s"], rel=1e-6)


def test_departure_time_changes_the_answer(eta_client):
    def eta(when: str) -> float:
        body = {"origin": {"lon": DOWNTOWN[0], "lat": DOWNTOWN[1]},
                "destination": {"lon": EAST[0], "lat": EAST[1]}, "departure_time": when}
        response = eta_client.post("/v1/eta", json=body)
        assert response.status_code == 200, response.text
        return response.json()["eta_s"]

    assert eta("2026-11-18T06:05:00") != eta("2026-11-18T08:40:00")


def test_no_departure_time_means_what_the_schema_says(eta_client):
    from models.eta.model import DEFAULT_DEPARTURE

    schemas = eta_client.get("/openapi.json").json()["components"]["schemas"]
    described = schemas["EtaRequest"]["properties"]["departure_time"]["description"]
    assert f"omitted = {DEFAULT_DEPARTURE:%Y-%m-%dT%H:%M} local time" in described
    assert "free flow)" not in described  # what it used to claim

    def eta(**when: str) -> dict:
        body = {"origin": {"lon": DOWNTOWN[0], "lat": DOWNTOWN[1]},
                "destination": {"lon": EAST[0], "lat": EAST[1]}, **when}
        response = eta_client.post("/v1/eta", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    omitted = eta()
    assert omitted["departure_time"] is None
    assert omitted["eta_s"] == eta(departure_time=DEFAULT_DEPARTURE.isoformat())["eta_s"]
    assert omitted["eta_s"] != eta(departure_time="2026-11-18T08:15:00")["eta_s"]


def test_osrm_route_and_metrics_name_the_model(eta_client):
    coordinates = f"{DOWNTOWN[0]},{DOWNTOWN[1]};{EAST[0]},{EAST[1]}"
    response = eta_client.get(f"/route/v1/driving/{coordinates}")
    assert response.status_code == 200 and response.json()["code"] == "Ok"
    assert "nar_eta" in eta_client.get("/metrics").text


def test_served_answers_equal_whole_graph_runs(eta_client, bundled_graph):
    """Over HTTP, from both worker processes, concurrently: every ETA equals the one a
    whole-graph run of the same model gives (the server's runs stop at the destination)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from models.inference.predictor import Predictor
    from models.inference.registry import load_model

    whole = Predictor(bundled_graph, load_model(SHIPPED_MODEL, bundled_graph))
    whole._targeted = False
    rng = np.random.default_rng(7)
    lon, lat = bundled_graph["node_lon"], bundled_graph["node_lat"]
    pairs = [(int(a), int(b)) for a, b in rng.choice(bundled_graph.num_nodes, (40, 2))
             if a != b]

    def served(pair):
        a, b = pair
        body = {"origin": {"lon": float(lon[a]), "lat": float(lat[a])},
                "destination": {"lon": float(lon[b]), "lat": float(lat[b])}}
        return eta_client.post("/v1/eta", json=body)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(served, pairs))
    for (a, b), response in zip(pairs, responses, strict=True):
        try:
            want = whole.eta((float(lon[a]), float(lat[a])), (float(lon[b]), float(lat[b])))
        except Exception as exc:  # noqa: BLE001 - the server must agree on NoRoute too
            assert response.status_code == 400 and type(exc).__name__ == "NoRouteError"
            continue
        assert response.status_code == 200, response.text
        # the API rounds to 0.01 s and 0.1 m
        assert response.json()["eta_s"] == pytest.approx(want.eta_s, abs=0.0051)
        assert response.json()["distance_m"] == pytest.approx(want.distance_m, abs=0.051)


def test_worker_socket_is_plain_tcp():
    """The shared socket of --workers N is bound as TCP, so asyncio sets TCP_NODELAY on
    each connection (no 40 ms delayed-ACK stalls)."""
    import socket

    from service.server import TcpConfig

    sock = TcpConfig(app=None, host="127.0.0.1", port=0).bind_socket()
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
